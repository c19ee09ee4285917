"""Inclusion proofs: one event shown to be in the log as a signed checkpoint states it,
checkable with the checkpoint key's public half alone.

A proof is JSON::

    {"format": "sellervault-inclusion-proof/1", "event_body": B, "leaf_index": I,
     "tree_size": S, "inclusion_path": [H, ...], "statement": T, "signature": G}

``B`` is the event's canonical body (the exact bytes, as a string: sorted keys, no spaces),
``I`` its position (its sequence number minus one), ``H`` the RFC 6962 audit path (hex) from
its leaf ``SHA-256(0x00 || B)`` to the root of the first ``S`` events, ``T`` the statement
of the checkpoint that signed that root and ``G`` its Ed25519 signature (hex). To check one:
verify ``G`` over ``T`` with the public key; read ``size`` and ``root`` from ``T`` (they must
be ``S`` and the root the path leads to, by RFC 9162 section 2.1.3.2); read the event's
``seq`` from ``B`` (it must be ``I + 1``). docs/operations.md (section 9) walks through it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, select

from sellervault.audit import checkpoints, merkle, retention
from sellervault.audit.chain import stored_body
from sellervault.audit.models import CheckpointRow
from sellervault.audit.writing import EVENTS
from sellervault.crypto.keyring import Keyring
from sellervault.crypto.signatures import PublicKeyError, VerifyKey
from sellervault.store.engine import Store

FORMAT = "sellervault-inclusion-proof/1"


class ProofUnavailableError(LookupError):
    """No such event, or no checkpoint covers it yet."""


class InvalidProofError(ValueError):
    """A proof that does not hold (the message says which part)."""


def prove(store: Store, seq: int) -> dict[str, Any]:
    """The proof that event ``seq`` is in the log, against the latest checkpoint. After a
    retention removal, the removed prefix enters the path by its compact range (the one the
    removal's checkpoint stored, ``merkle.inclusion_proof_after``): the same path."""
    with store.snapshot() as connection:
        removals = retention.removal_rows(connection)
        prefix = _removed_prefix(connection, removals)
        if seq <= prefix.size:
            raise ProofUnavailableError("that event was removed by the retention job")
        row = connection.execute(select(EVENTS).where(EVENTS.c.seq == seq)).first()
        if row is None:
            raise ProofUnavailableError("no event has that number")
        latest = connection.execute(select(CheckpointRow).order_by(
            CheckpointRow.number.desc()).limit(1)).first()
        if latest is None or latest.tree_size < seq:
            raise ProofUnavailableError("no checkpoint covers this event yet: the next one "
                                        "comes within a minute of a running server")
        leaves = list(checkpoints.leaves(connection, prefix.size + 1, latest.tree_size))
    if len(leaves) != latest.tree_size - prefix.size:
        raise ProofUnavailableError("events the checkpoint covers are missing: run "
                                    "`sellervault audit verify`")
    body = stored_body(row)
    path = merkle.inclusion_proof_after(prefix, leaves, seq - 1)
    return {"format": FORMAT, "event_body": body.decode(), "leaf_index": seq - 1,
            "tree_size": latest.tree_size, "inclusion_path": [h.hex() for h in path],
            "statement": latest.statement, "signature": latest.signature}


def _removed_prefix(connection: Connection, removals: list[Any]) -> merkle.Frontier:
    """The compact range of the events the retention job removed (none: empty)."""
    if not removals:
        return merkle.Frontier()
    removal = retention.Removal.parse(removals[-1].statement.encode())
    row = connection.execute(select(CheckpointRow.statement, CheckpointRow.frontier).where(
        CheckpointRow.number == removal.checkpoint)).first()
    frontier = None if row is None else checkpoints.stored_frontier(
        row.frontier, checkpoints.Checkpoint.parse(row.statement.encode()))
    if frontier is None or frontier.size != removal.removed_through:
        raise ProofUnavailableError("the checkpoint the retention names is missing or "
                                    "damaged: run `sellervault audit verify`")
    return frontier


def public_key_pem(store: Store, keyring: Keyring) -> str:
    with store.snapshot() as connection:
        public_key = checkpoints.find_public_key(keyring, connection)
    if public_key is None:
        raise ProofUnavailableError("no checkpoint has been signed yet")
    return public_key.pem()


def check_proof(proof: dict[str, Any], public_key_pem: bytes) -> checkpoints.Checkpoint:
    """The checkpoint that vouches for the event, if the proof holds (else
    ``InvalidProofError``)."""
    try:
        public_key = VerifyKey.from_pem(public_key_pem)
    except PublicKeyError as exc:
        raise InvalidProofError(str(exc)) from None
    try:
        if proof["format"] != FORMAT:
            raise InvalidProofError("not a SellerVault inclusion proof")
        statement = str(proof["statement"]).encode()
        if not public_key.verifies(statement, str(proof["signature"])):
            raise InvalidProofError("the checkpoint is not signed by this key")
        checkpoint = checkpoints.Checkpoint.parse(statement)
        body = str(proof["event_body"]).encode()
        index, size = _number(proof["leaf_index"]), _number(proof["tree_size"])
        if size != checkpoint.size or _number(json.loads(body)["seq"]) != index + 1:
            raise InvalidProofError("the proof's sizes or position do not match")
        merkle.verify_inclusion(index, size, merkle.leaf_hash(body),
                                [bytes.fromhex(h) for h in proof["inclusion_path"]],
                                bytes.fromhex(checkpoint.root))
    except merkle.ProofError as exc:
        raise InvalidProofError(f"the event is not under the signed root ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InvalidProofError):
            raise
        raise InvalidProofError("the proof is malformed") from None
    return checkpoint


def _number(value: object) -> int:
    """A JSON integer as written, nothing coerced: ``"5"``, ``5.0`` or ``true`` in a proof is
    malformed (a proof read back as other than its checker read it is no proof)."""
    if type(value) is not int or value < 0:
        raise ValueError("not a count")
    return value
