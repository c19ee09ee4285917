"""Retention: events older than ``SELLERVAULT_AUDIT_RETENTION_DAYS`` (never under 365) leave
the log, and only this way, with a signed statement of what went.

The ``audit-retention`` job (daily) removes a prefix of the log, events ``1..R``, where ``R``
is the size of a checkpoint signed before the retention's cutoff (its signed time, never an
event's ``occurred_at``: that column is only checked by the MAC, and one edited to 2000 had
every event removed): so the Merkle tree of what remains continues from that checkpoint's
compact range, which the checkpoint's signed root vouches for. Before deleting anything it
signs, with the checkpoint key, a statement::

    {"log", "kind": "removal", "number", "previous", "removed_through": R, "checkpoint": N,
     "last_hash": MAC of event R, "last_time": checkpoint N's signed time, "cutoff", "time",
     "key"}

``audit verify`` then starts from the newest statement: event ``R + 1`` must link to
``last_hash``, checkpoint ``N`` must cover exactly ``R`` events and its stored compact range
must give its signed root, the tree is extended from there, and every statement must be
signed, numbered, chained, and have removed nothing younger than the floor of 365 days
before its own time (the checkpoint it names signed at least that long before it). Events
``<= R`` that are still there (a run interrupted between its batches) are out of the log:
the next run deletes them.

Deleting goes in batches of short transactions (SQLite has one writer); a run is safe to
repeat at any point: the statement is committed first, the deletions follow it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, inspect, select

from sellervault.access.actions import Action
from sellervault.audit import checkpoints
from sellervault.audit.auditor import Auditor
from sellervault.audit.chain import stored_mac_holds
from sellervault.audit.events import SYSTEM_ACTOR, Outcome, TargetType
from sellervault.audit.log import event_time
from sellervault.audit.models import CheckpointRow, EventRow, RemovalRow
from sellervault.audit.writing import EVENTS, LOG_KEY
from sellervault.crypto.keyring import Keyring
from sellervault.runtime import Runtime

RETENTION_FLOOR = timedelta(days=365)
DELETE_BATCH = 5000
READ_BATCH = 1000


class RetentionRefusedError(RuntimeError):
    """The job will not remove anything: the checkpoint or event it would remove up to is
    not as signed (``audit verify`` says more)."""
_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class Removal:
    """A removal statement: what is signed."""

    number: int
    previous: str | None
    removed_through: int
    checkpoint: int
    last_hash: str
    last_time: str
    cutoff: str
    time: str
    key: str

    def statement(self) -> bytes:
        return _JSON.encode({"log": checkpoints.LOG_ID, "kind": "removal",
                             "number": self.number, "previous": self.previous,
                             "removed_through": self.removed_through,
                             "checkpoint": self.checkpoint, "last_hash": self.last_hash,
                             "last_time": self.last_time, "cutoff": self.cutoff,
                             "time": self.time, "key": self.key}).encode()

    @classmethod
    def parse(cls, statement: bytes) -> Removal:
        fields = json.loads(statement)
        if not isinstance(fields, dict) or fields.get("log") != checkpoints.LOG_ID \
                or fields.get("kind") != "removal":
            raise ValueError("not a removal statement of this log")
        removal = cls(int(fields["number"]), fields["previous"],
                      int(fields["removed_through"]), int(fields["checkpoint"]),
                      str(fields["last_hash"]), str(fields["last_time"]),
                      str(fields["cutoff"]), str(fields["time"]), str(fields["key"]))
        if removal.statement() != statement:
            raise ValueError("not in canonical form")
        for moment in (removal.last_time, removal.cutoff, removal.time):
            _moment(moment)  # (ValueError: not a time, and so not a statement)
        return removal


def removal_rows(connection: Connection) -> list[Any]:
    """The removal statements in order (none in a database migrated below them)."""
    if not inspect(connection).has_table(RemovalRow.__tablename__):
        return []
    return list(connection.execute(select(RemovalRow).order_by(RemovalRow.number)))


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def younger_than_the_floor(removal: Removal, checkpoint_time: str) -> bool:
    """Whether a statement removed events the 365-day floor still protected: its
    checkpoint's signed time ``checkpoint_time`` (the newest its events can be), or what it
    says of itself, is not that long before its own time."""
    floor = _moment(removal.time) - RETENTION_FLOOR
    return _moment(checkpoint_time) >= floor or _moment(removal.last_time) >= floor \
        or _moment(removal.cutoff) > floor


@dataclass(frozen=True, slots=True)
class _Target:
    """The checkpoint a removal goes up to, as signed, and the MAC of its last event."""

    number: int
    size: int
    time: str
    last_hash: str


def remove_expired(rt: Runtime) -> int:
    """The ``audit-retention`` job: the events removed by this run."""
    retention = max(timedelta(days=rt.settings.audit_retention_days), RETENTION_FLOOR)
    now = rt.clock.now()
    cutoff = event_time(now - retention)
    with rt.store.snapshot() as connection:
        removals = removal_rows(connection)
        done = removals[-1].removed_through if removals else 0
        target = _target(connection, rt.keyring, done, cutoff)
    if target is not None:
        with rt.store.transaction() as session:
            key = checkpoints.signing_key(rt.keyring, session)
            removal = Removal(
                number=len(removals) + 1,
                previous=(checkpoints.statement_hash(removals[-1].statement.encode())
                          if removals else None),
                removed_through=target.size, checkpoint=target.number,
                last_hash=target.last_hash, last_time=target.time, cutoff=cutoff,
                time=event_time(now), key=key.public.key_id)
            statement = removal.statement()
            session.add(RemovalRow(number=removal.number, removed_through=target.size,
                                   statement=statement.decode(),
                                   signature=key.sign(statement)))
            Auditor(rt.audit, SYSTEM_ACTOR).record(
                session, Action.AUDIT_RETENTION, Outcome.SUCCESS,
                target_type=TargetType.SECURITY_EVENT, target_id=str(target.size),
                count=target.size - done)
        done = target.size
    _sync_file(rt)
    return _delete_through(rt, done)


def _target(connection: Connection, keyring: Keyring, done: int,
            cutoff: str) -> _Target | None:
    """The newest checkpoint past ``done`` signed before ``cutoff`` (None: nothing to
    remove): its events are all older than its signed time. Its signature and its last
    event's MAC are checked, as neither the statement's time nor that MAC may be taken on
    the database's word."""
    found = _newest_before(connection, done, cutoff)
    if found is None:
        return None
    public_key = checkpoints.find_public_key(keyring, connection)
    signed = checkpoints.signed_checkpoint(found, public_key)
    if signed is None:
        raise RetentionRefusedError(f"checkpoint {found.number} is not signed by the "
                                    "checkpoint key: nothing removed")
    if signed.size <= done:
        return None
    return _Target(signed.number, signed.size, signed.time,
                   _last_hash(connection, keyring, signed.size))


def _newest_before(connection: Connection, done: int, cutoff: str) -> Any | None:
    """The last checkpoint row past ``done``, in order, before the first whose statement is
    not before ``cutoff`` (times never decrease): read a batch at a time from the oldest, so
    a daily run reads about a day of checkpoints."""
    found, after = None, 0
    while True:
        rows = connection.execute(select(CheckpointRow).where(
            CheckpointRow.tree_size > done, CheckpointRow.number > after)
            .order_by(CheckpointRow.number).limit(READ_BATCH)).all()
        for row in rows:
            try:
                time = checkpoints.Checkpoint.parse(row.statement.encode()).time
            except (ValueError, KeyError, TypeError):
                raise RetentionRefusedError(f"checkpoint {row.number} is not a checkpoint "
                                            "statement: nothing removed") from None
            if time >= cutoff:  # (event times, which sort as they read)
                return found
            found = row
        if len(rows) < READ_BATCH:
            return found
        after = rows[-1].number


def _last_hash(connection: Connection, keyring: Keyring, seq: int) -> str:
    """The MAC of event ``seq``, checked against its body and link: the next event kept must
    link to it, so a statement naming a wrong one would fail verification forever."""
    row = connection.execute(select(EVENTS).where(EVENTS.c.seq == seq)).first()
    log_key = keyring.find_system_key(connection, LOG_KEY)
    if row is None or log_key is None or not stored_mac_holds(log_key, row):
        raise RetentionRefusedError(f"event {seq} is missing or altered: nothing removed")
    return str(row.hash)


def _sync_file(rt: Runtime) -> None:
    """Append to the checkpoint file the removal statements it lacks (the one just signed,
    or one a process committed and died before appending), in order: ``audit verify``
    checks that the file holds the database's statements, so one quietly rewritten in the
    database no longer matches the copy on other storage."""
    path = rt.settings.checkpoint_file
    in_file = {int(line["number"]) for line in checkpoints.removal_lines(
        checkpoints.read_file(path))}
    with rt.store.snapshot() as connection:
        missing = [row for row in removal_rows(connection) if row.number not in in_file]
    if missing:
        checkpoints.append_lines(path, [checkpoints.removal_line(
            row.number, row.statement, row.signature) for row in missing])


def _delete_through(rt: Runtime, last: int) -> int:
    """Delete events ``1..last`` that are still there, a batch per transaction."""
    deleted = 0
    while True:
        with rt.store.transaction() as session:
            first = session.scalar(select(func.min(EventRow.seq)))
            if first is None or first > last:
                return deleted
            result = session.execute(delete(EventRow).where(
                EventRow.seq <= min(last, first + DELETE_BATCH - 1)))
            deleted += getattr(result, "rowcount", 0)
