"""Retention: events older than ``SELLERVAULT_AUDIT_RETENTION_DAYS`` (never under 365) leave
the log, and only this way, with a signed statement of what went.

The ``audit-retention`` job (daily) removes a prefix of the log, events ``1..R``, where ``R``
is the size of a signed checkpoint whose last event is older than the retention: so the
Merkle tree of what remains continues from that checkpoint's compact range, which the
checkpoint's signed root vouches for. Before deleting anything it signs, with the checkpoint
key, a statement::

    {"log", "kind": "removal", "number", "previous", "removed_through": R, "checkpoint": N,
     "last_hash": MAC of event R, "last_time": its time, "cutoff", "time", "key"}

``audit verify`` then starts from the newest statement: event ``R + 1`` must link to
``last_hash``, checkpoint ``N`` must cover exactly ``R`` events and its stored compact range
must give its signed root, the tree is extended from there, and every statement must be
signed, numbered, chained, and have removed nothing younger than the floor of 365 days
before its own time. Events ``<= R`` that are still there (a run interrupted between its
batches) are out of the log: the next run deletes them.

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
from sellervault.audit.events import SYSTEM_ACTOR, Outcome, TargetType
from sellervault.audit.log import event_time
from sellervault.audit.models import CheckpointRow, EventRow, RemovalRow
from sellervault.runtime import Runtime

RETENTION_FLOOR = timedelta(days=365)
DELETE_BATCH = 5000
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


def younger_than_the_floor(removal: Removal) -> bool:
    """Whether a statement says it removed an event the 365-day floor still protected."""
    return _moment(removal.last_time) >= _moment(removal.time) - RETENTION_FLOOR \
        or _moment(removal.cutoff) > _moment(removal.time) - RETENTION_FLOOR


def remove_expired(rt: Runtime) -> int:
    """The ``audit-retention`` job: the events removed by this run."""
    retention = max(timedelta(days=rt.settings.audit_retention_days), RETENTION_FLOOR)
    now = rt.clock.now()
    cutoff = event_time(now - retention)
    with rt.store.snapshot() as connection:
        removals = removal_rows(connection)
        done = removals[-1].removed_through if removals else 0
        target = connection.execute(
            select(CheckpointRow.number, CheckpointRow.tree_size, EventRow.hash,
                   EventRow.occurred_at)
            .join(EventRow, EventRow.seq == CheckpointRow.tree_size)
            .where(CheckpointRow.tree_size > done, EventRow.occurred_at < cutoff)
            .order_by(CheckpointRow.tree_size.desc()).limit(1)).first()
    if target is not None:
        with rt.store.transaction() as session:
            key = checkpoints.signing_key(rt.keyring, session)
            removal = Removal(
                number=len(removals) + 1,
                previous=(checkpoints.statement_hash(removals[-1].statement.encode())
                          if removals else None),
                removed_through=target.tree_size, checkpoint=target.number,
                last_hash=target.hash, last_time=target.occurred_at, cutoff=cutoff,
                time=event_time(now), key=key.public.key_id)
            statement = removal.statement()
            session.add(RemovalRow(number=removal.number, removed_through=target.tree_size,
                                   statement=statement.decode(),
                                   signature=key.sign(statement)))
            Auditor(rt.audit, SYSTEM_ACTOR).record(
                session, Action.AUDIT_RETENTION, Outcome.SUCCESS,
                target_type=TargetType.SECURITY_EVENT, target_id=str(target.tree_size),
                count=target.tree_size - done)
        done = target.tree_size
    _sync_file(rt)
    return _delete_through(rt, done)


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
