"""audit.proofs: an event proven to be in the log, checked with the public key alone, on
SQLite and PostgreSQL; and by a verifier written here from the documented format, which
imports nothing from SellerVault (hashlib and cryptography only): what an auditor would
write.

Every event under a checkpoint has a proof that verifies; a proof with the event edited,
the path altered, the position moved, the statement edited or the signature from another
key is refused; an event no checkpoint covers yet has no proof.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from sellervault.access.actions import Action
from sellervault.audit import checkpoints, proofs
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel, Outcome
from sellervault.runtime import Runtime


def independent_check(proof: dict[str, Any], public_key_pem: bytes) -> bool:
    """The documented algorithm, re-implemented without the product (RFC 9162 2.1.3.2)."""
    key = serialization.load_pem_public_key(public_key_pem)
    try:
        key.verify(bytes.fromhex(proof["signature"]),  # type: ignore[union-attr, call-arg]
                   proof["statement"].encode())
    except Exception:
        return False
    statement = json.loads(proof["statement"])
    body = proof["event_body"].encode()
    index, size = proof["leaf_index"], proof["tree_size"]
    if statement["size"] != size or json.loads(body)["seq"] != index + 1 or index >= size:
        return False
    node = hashlib.sha256(b"\x00" + body).digest()
    fn, sn = index, size - 1
    for sibling_hex in proof["inclusion_path"]:
        sibling = bytes.fromhex(sibling_hex)
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            node = hashlib.sha256(b"\x01" + sibling + node).digest()
            while fn % 2 == 0 and fn != 0:
                fn //= 2
                sn //= 2
        else:
            node = hashlib.sha256(b"\x01" + node + sibling).digest()
        fn //= 2
        sn //= 2
    return sn == 0 and node.hex() == statement["root"]


@pytest.fixture
def proven(runtime: Runtime) -> tuple[Runtime, int, bytes]:
    """A log of init's events and 10 more, under one checkpoint; (runtime, events, key)."""
    auditor = Auditor(runtime.audit, Actor(Channel.API, actor_id="acc_0123456789abcdef"))
    with runtime.store.transaction() as session:
        for _ in range(10):
            auditor.record(session, Action.ORDERS_READ, Outcome.SUCCESS, tenant_id="acme")
    checkpoints.write_checkpoint(runtime)
    pem = proofs.public_key_pem(runtime.store, runtime.keyring).encode()
    with runtime.store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM audit_checkpoints")).scalar() == 1
        events = int(connection.execute(text("SELECT count(*) FROM security_events"))
                     .scalar_one())
    return runtime, events, pem


def test_every_event_under_the_checkpoint_has_a_proof_both_checkers_accept(
        proven: tuple[Runtime, int, bytes]) -> None:
    runtime, events, pem = proven
    for seq in range(1, events + 1):
        proof = proofs.prove(runtime.store, seq)
        assert proofs.check_proof(proof, pem).number == 1
        assert independent_check(proof, pem), seq


def tampered(proof: dict[str, Any]) -> list[dict[str, Any]]:
    """The same proof, altered one way each."""
    variants = []
    body = copy.deepcopy(proof)
    body["event_body"] = body["event_body"].replace('"success"', '"denied"')
    variants.append(body)
    path = copy.deepcopy(proof)
    path["inclusion_path"][0] = "00" * 32
    variants.append(path)
    moved = copy.deepcopy(proof)
    moved["leaf_index"] += 1
    variants.append(moved)
    statement = copy.deepcopy(proof)
    statement["statement"] = statement["statement"].replace('"number":1', '"number":2')
    variants.append(statement)
    short = copy.deepcopy(proof)
    short["inclusion_path"] = short["inclusion_path"][:-1]
    variants.append(short)
    return variants


def test_a_tampered_proof_is_refused_by_both_checkers(
        proven: tuple[Runtime, int, bytes]) -> None:
    runtime, _, pem = proven
    proof = proofs.prove(runtime.store, 5)
    for variant in tampered(proof):
        with pytest.raises(proofs.InvalidProofError):
            proofs.check_proof(variant, pem)
        assert not independent_check(variant, pem)


@pytest.mark.parametrize("field", ["leaf_index", "tree_size"])
@pytest.mark.parametrize("written", [str, float, lambda n: n == n])
def test_a_number_written_as_anything_but_an_integer_is_malformed(
        proven: tuple[Runtime, int, bytes], field: str, written: Any) -> None:
    """``"4"``, ``4.0`` or ``true`` where the proof says an integer: refused as malformed,
    never read as the number (the CLI's message would then crash on it, or another
    checker read a different proof)."""
    runtime, _, pem = proven
    proof = proofs.prove(runtime.store, 5)
    proof[field] = written(proof[field])
    with pytest.raises(proofs.InvalidProofError, match="malformed"):
        proofs.check_proof(proof, pem)


def test_a_proof_checked_with_another_key_is_refused(
        proven: tuple[Runtime, int, bytes]) -> None:
    runtime, _, _ = proven
    other = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    proof = proofs.prove(runtime.store, 3)
    with pytest.raises(proofs.InvalidProofError, match="not signed by this key"):
        proofs.check_proof(proof, other)
    assert not independent_check(proof, other)


def test_no_proof_for_an_event_no_checkpoint_covers_or_that_does_not_exist(
        proven: tuple[Runtime, int, bytes]) -> None:
    runtime, events, _ = proven
    auditor = Auditor(runtime.audit, Actor(Channel.API))
    with runtime.store.transaction() as session:
        auditor.record(session, Action.ORDERS_READ, Outcome.SUCCESS, tenant_id="acme")
    with pytest.raises(proofs.ProofUnavailableError, match="no checkpoint covers"):
        proofs.prove(runtime.store, events + 1)
    with pytest.raises(proofs.ProofUnavailableError, match="no event"):
        proofs.prove(runtime.store, events + 100)
