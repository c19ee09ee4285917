"""Signed checkpoints of the security log: tamper evidence an outsider can check.

The log's events are the leaves of an RFC 6962 Merkle tree (``merkle``; leaf ``i`` is event
``i + 1``'s canonical body). Every 60 seconds the ``audit-checkpoint`` job signs a
checkpoint, even when no event was written since the last one, and sooner when the log has
grown by 1,000 events (``CheckpointTrigger``)::

    {"key": K, "log": "sellervault-security-log", "number": N, "previous": P,
     "root": R, "size": S, "time": T}

(canonical JSON: sorted keys, no spaces, UTF-8): the root ``R`` (hex) of the first ``S``
events, at ``T``, chained to checkpoint ``N - 1`` by ``P``, the SHA-256 (hex) of that
checkpoint's statement (null for the first). The signature is Ed25519 under a key used for
nothing else (a system key: its 32-byte seed wrapped by the root key), whose public key
``sellervault audit public-key`` exports, ``K`` being the first 16 bytes (hex) of the
SHA-256 of its raw public bytes.

Each checkpoint is kept in the database and appended, as one JSON line, to a file whose
directory is configurable (``SELLERVAULT_CHECKPOINT_DIR``), so that it can live on storage
the database's writers cannot rewrite. What this catches that the HMAC chain alone cannot:
a truncated tail with a rewritten head (the latest checkpoint covers more events than are
left), a history rebuilt to the same size (the roots differ), checkpoints deleted or an old
database restored (the file holds later checkpoints than the database). An attacker who
holds the root key, or who can rewrite both the database and the file, is out of reach of
any of this; an outside copy of the file and of the public key is the remedy.

The job signs only what it has authenticated: the events it newly covers must carry their
MACs and link on from the last event the previous checkpoint covered, in sequence (else a
row forged at the head, with any hash, would be signed, and its proof would check); the
previous checkpoint must be signed, its stored compact range (an unsigned column) must give
its signed root, else it is rebuilt from the events; and a checkpoint's time never goes
back (a clock stepped back would otherwise sign one that verification refuses forever).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from sellervault.audit import merkle
from sellervault.audit.chain import GENESIS, stored_body
from sellervault.audit.models import CheckpointRow
from sellervault.audit.subscribers import CommittedEvent
from sellervault.audit.writing import EVENTS, HEAD_ID, HEADS, LOG_KEY
from sellervault.crypto.keyring import Keyring
from sellervault.crypto.signatures import SigningKey, VerifyKey
from sellervault.runtime import Runtime
from sellervault.store.driver import Db

CHECKPOINT_KEY = "audit-checkpoint"
EVENTS_PER_CHECKPOINT = 1000
"""Besides every 60 seconds, a checkpoint when the log has grown by this many events."""
LOG_ID = "sellervault-security-log"
READ_BATCH = 5000
_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


class CheckpointRefusedError(RuntimeError):
    """The job will not sign: the log or its last checkpoint is not what was signed (the
    message says which event or checkpoint; ``audit verify`` says more)."""


class CheckpointFileError(ValueError):
    """A line of the checkpoint file that is not a checkpoint or removal line (garbage, or
    half a line): named by its number, never echoed."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint's statement: what is signed."""

    number: int
    size: int
    root: str
    time: str
    previous: str | None
    key: str

    def statement(self) -> bytes:
        return _JSON.encode({"key": self.key, "log": LOG_ID, "number": self.number,
                             "previous": self.previous, "root": self.root,
                             "size": self.size, "time": self.time}).encode()

    @classmethod
    def parse(cls, statement: bytes) -> Checkpoint:
        """The checkpoint a statement states (``ValueError`` if it is not one)."""
        fields = json.loads(statement)
        if not isinstance(fields, dict) or fields.get("log") != LOG_ID:
            raise ValueError("not a checkpoint of this log")
        checkpoint = cls(int(fields["number"]), int(fields["size"]), str(fields["root"]),
                         str(fields["time"]), fields["previous"], str(fields["key"]))
        if checkpoint.statement() != statement:
            raise ValueError("not in canonical form")
        return checkpoint


def statement_hash(statement: bytes) -> str:
    return hashlib.sha256(statement).hexdigest()


def signed_checkpoint(row: Any, public_key: VerifyKey | None) -> Checkpoint | None:
    """The checkpoint a row states, if its statement is signed by ``public_key`` and agrees
    with the row's size; else None (the row's other columns are not signed)."""
    if public_key is None:
        return None
    try:
        checkpoint = Checkpoint.parse(row.statement.encode())
    except (ValueError, KeyError, TypeError):
        return None
    if checkpoint.key != public_key.key_id or checkpoint.size != row.tree_size \
            or not public_key.verifies(row.statement.encode(), row.signature):
        return None
    return checkpoint


def stored_frontier(stored: str | None, checkpoint: Checkpoint) -> merkle.Frontier | None:
    """The compact range stored with ``checkpoint``, if it is well-formed and gives the
    checkpoint's signed root; else None. The column is not signed: trusted as it stands, a
    corrupt one stopped every later run, and a wrong one would be built on."""
    try:
        hashes = json.loads(stored or "")
        if not isinstance(hashes, list) or len(hashes) != checkpoint.size.bit_count():
            return None
        frontier = merkle.Frontier(checkpoint.size, [bytes.fromhex(h) for h in hashes])
    except (TypeError, ValueError):
        return None
    return frontier if frontier.root().hex() == checkpoint.root else None


def signing_key(keyring: Keyring, db: Db) -> SigningKey:
    return SigningKey(keyring.system_key(db, CHECKPOINT_KEY))


def find_public_key(keyring: Keyring, db: Db) -> VerifyKey | None:
    """The checkpoint key's public half, if the key exists (never creates it)."""
    seed = keyring.find_system_key(db, CHECKPOINT_KEY)
    return None if seed is None else SigningKey(seed).public


def leaves(connection: Connection | Session, first: int, last: int) -> Iterator[bytes]:
    """The leaf hashes of events ``first..last`` in order (fewer if events are missing:
    the caller compares the count)."""
    while first <= last:
        rows = connection.execute(select(EVENTS).where(
            EVENTS.c.seq >= first, EVENTS.c.seq <= min(last, first + READ_BATCH - 1))
            .order_by(EVENTS.c.seq)).all()
        if not rows:
            return
        for row in rows:
            yield merkle.leaf_hash(stored_body(row))
        first = rows[-1].seq + 1


def _line(row: CheckpointRow) -> str:
    return _JSON.encode({"number": row.number, "signature": row.signature,
                         "statement": row.statement}) + "\n"


REMOVAL = "removal"
"""The ``type`` of a removal statement's line (``audit.retention``); a checkpoint's line has
none, as every line had before removals were written to the file."""


def removal_line(number: int, statement: str, signature: str) -> str:
    return _JSON.encode({"number": number, "signature": signature, "statement": statement,
                         "type": REMOVAL}) + "\n"


def read_file(path: Path) -> list[dict[str, Any]]:
    """The checkpoint file's lines (none if it does not exist): checkpoints and removal
    statements, in the order they were written."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8", errors="replace") as lines:
        return [_parse_line(line, number) for number, line in enumerate(lines, start=1)
                if line.strip()]


def _parse_line(line: str | bytes, number: int) -> dict[str, Any]:
    """One line of the file, or ``CheckpointFileError`` naming it (a garbage or half-written
    line would otherwise stop every job run and verification with a bare JSON error)."""
    try:
        fields = json.loads(line)
        if isinstance(fields, dict) and isinstance(fields.get("number"), int):
            return fields
    except ValueError:
        pass
    raise CheckpointFileError(f"line {number} of the checkpoint file is not a checkpoint or "
                              "removal line")


def checkpoint_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("type") is None]


def removal_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("type") == REMOVAL]


def append_lines(path: Path, lines: list[str]) -> None:
    """Append ``lines`` to the file, each whole, then make it durable (owner-only)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as file:
        for line in lines:
            file.write(line)
        file.flush()
        os.fsync(file.fileno())


def _append(path: Path, rows: list[CheckpointRow]) -> None:
    append_lines(path, [_line(row) for row in rows])


_TAIL = 64 * 1024  # far more than one line (a few hundred bytes)


def _last_number(path: Path) -> int:
    """The number of the file's last checkpoint (0 for none), read from its end: the job
    runs every minute, and the file grows by a line each time."""
    if not path.exists():
        return 0
    with path.open("rb") as file:
        start = file.seek(max(0, file.seek(0, os.SEEK_END) - _TAIL))
        lines = file.read().splitlines()[1 if start > 0 else 0:]  # (whole lines only)
    for line in reversed([line for line in lines if line.strip()]):
        try:
            fields = _parse_line(line, 0)
        except CheckpointFileError:
            break  # read_file names the line by its number in the whole file
        if fields.get("type") is None:  # (a removal statement's line is not a checkpoint)
            return int(fields["number"])
    return _last_number_in(path)


def _last_number_in(path: Path) -> int:
    """The whole file's last checkpoint (its tail held removal statements only)."""
    found = checkpoint_lines(read_file(path))
    return int(found[-1]["number"]) if found else 0


def _sync_file(path: Path, session: Session) -> None:
    """Append what the database holds beyond the file (a process that died between its
    commit and its append): the file is the database's checkpoints, in order, or a prefix
    (``audit verify`` checks that it is)."""
    in_file = _last_number(path)
    missing = list(session.scalars(select(CheckpointRow).where(CheckpointRow.number > in_file)
                                   .order_by(CheckpointRow.number)))
    if missing:
        _append(path, missing)


def write_checkpoint(rt: Runtime) -> int:
    """The ``audit-checkpoint`` job: sign the log as it stands; the events it newly covers.

    The events since the last checkpoint are read from a snapshot (no lock held: events
    never change once written), each authenticated (its MAC, its link, its place) from the
    last event the last checkpoint covered, and hashed onto that checkpoint's compact range;
    the checkpoint is then inserted with the next number (the primary key refuses a second
    one, should two processes ever run the job at once) and appended to the file. Anything
    not authenticated: ``CheckpointRefusedError``, and nothing is written."""
    from sellervault.audit import verification  # (which imports this module)

    path = rt.settings.checkpoint_file
    with rt.store.snapshot() as connection:
        last = connection.execute(select(CheckpointRow).order_by(
            CheckpointRow.number.desc()).limit(1)).first()
        head = connection.execute(select(HEADS.c.seq).where(HEADS.c.id == HEAD_ID)).scalar()
        log_key = rt.keyring.find_system_key(connection, LOG_KEY)
        if log_key is None:
            raise CheckpointRefusedError("not signing the log: the log key is missing")
        try:
            tip = _tip(connection, rt.keyring, log_key, last)
            frontier, covered = tip.frontier, tip.frontier.size
            for leaf, _ in verification.authenticated_leaves(
                    connection, log_key, covered + 1, head or 0, tip.last_hash):
                frontier.append(leaf)
        except verification.BrokenLogError as exc:
            raise CheckpointRefusedError(f"not signing the log: {exc}") from None
    with rt.store.transaction() as session:
        _sync_file(path, session)
        key = signing_key(rt.keyring, session)
        checkpoint = Checkpoint(
            number=1 if last is None else last.number + 1, size=frontier.size,
            root=frontier.root().hex(), time=_time(rt.audit.occurred_at(), tip.signed),
            previous=None if last is None else statement_hash(last.statement.encode()),
            key=key.public.key_id)
        statement = checkpoint.statement()
        row = CheckpointRow(number=checkpoint.number, tree_size=checkpoint.size,
                            statement=statement.decode(), signature=key.sign(statement),
                            frontier=json.dumps([h.hex() for h in frontier.hashes]))
        session.add(row)
        session.flush()
    _append(path, [row])
    return frontier.size - covered


def _time(now: str, previous: Checkpoint | None) -> str:
    """Now, or the last checkpoint's time if the clock has since been stepped back (NTP, a
    VM restored): verification requires times that never decrease, and a checkpoint signed
    earlier than the last would fail it forever. (Both are event times, which sort as they
    read.)"""
    return now if previous is None else max(now, previous.time)


@dataclass(slots=True)
class _Tip:
    """Where the next checkpoint continues from: the compact range of the events the last
    one covers, the MAC of its last event (the next event must link to it), and that last
    checkpoint as signed (None before the first)."""

    frontier: merkle.Frontier
    last_hash: str
    signed: Checkpoint | None = None


def _tip(connection: Connection, keyring: Keyring, log_key: bytes, last: Any) -> _Tip:
    """The last checkpoint's tip: its signature checked, its stored compact range used only
    if it gives the signed root, else rebuilt from the (authenticated) events."""
    from sellervault.audit import verification  # (which imports this module)

    if last is None:
        return _Tip(merkle.Frontier(), GENESIS)
    public_key = find_public_key(keyring, connection)
    signed = signed_checkpoint(last, public_key)
    if signed is None:
        raise CheckpointRefusedError(f"not signing the log: checkpoint {last.number} is not "
                                     "signed by the checkpoint key")
    frontier = stored_frontier(last.frontier, signed)
    if frontier is not None:
        last_hash = connection.execute(select(EVENTS.c.hash).where(
            EVENTS.c.seq == signed.size)).scalar()
        if last_hash is not None:
            return _Tip(frontier, last_hash, signed)
    start = verification.log_start(connection, public_key)
    if isinstance(start, str):
        raise CheckpointRefusedError(f"not signing the log: {start}")
    if frontier is not None and start.removed_through == signed.size:
        return _Tip(frontier, start.prev_hash, signed)  # (its last event was removed)
    rebuilt = start.frontier.copy() if start.frontier is not None else merkle.Frontier()
    last_hash = start.prev_hash
    for leaf, mac in verification.authenticated_leaves(
            connection, log_key, rebuilt.size + 1, signed.size, start.prev_hash):
        rebuilt.append(leaf)
        last_hash = mac
    if rebuilt.size != signed.size or rebuilt.root().hex() != signed.root:
        raise CheckpointRefusedError(f"not signing the log: the events up to {signed.size} "
                                     f"are not the ones checkpoint {signed.number} signed")
    return _Tip(rebuilt, last_hash, signed)


class CheckpointTrigger:
    """A subscriber (``AuditLog.subscribe``) that asks for a checkpoint whenever the chain
    has grown by ``every`` events since it last asked (or since it started): it reads the
    chain position of the events this process commits, so events of other processes count
    too, as they move the position on."""

    def __init__(self, checkpoint_now: Callable[[], object],
                 every: int = EVENTS_PER_CHECKPOINT) -> None:
        self._checkpoint_now = checkpoint_now
        self._every = every
        self._next_at: int | None = None

    def wants(self, committed: CommittedEvent) -> bool:
        """Only the events that may cross the next threshold (the others wake no thread;
        ``__call__`` checks again)."""
        return self._next_at is None or committed.seq >= self._next_at

    def __call__(self, committed: CommittedEvent) -> None:
        if self._next_at is None:
            self._next_at = committed.seq + self._every
        if committed.seq >= self._next_at:
            self._next_at = committed.seq + self._every
            self._checkpoint_now()
