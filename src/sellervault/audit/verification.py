"""Verifying the security log: every MAC, every link, the sequence and the head, then the
signed checkpoints.

``verify`` reads one snapshot and names the first bad event: an edited, removed, reordered
or inserted event, a head that does not match the last event, events past the head, or a
chain that does not begin with ``init``'s first event (a log emptied and started again).
Then every checkpoint (``checkpoints``): its signature, its link to the one before, its
root against the events it covers (recomputed while walking them), and that none covers
more events than the log holds (a truncated tail, even with a rewritten head); and the
checkpoint file against the database (checkpoints deleted, or an old database restored).

After the retention job removed a prefix of the log (``retention``), the walk starts from
the newest removal statement: every statement signed, numbered and chained, none removing
what the 365-day floor protects; the first event kept links to the last one removed; the
Merkle tree continues from the compact range of the checkpoint the statement names (whose
signed root it must give). Checkpoints of the removed prefix keep their signatures and links
checked; their roots cannot be recomputed (their events are gone).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, func, inspect, select

from sellervault.audit import checkpoints, merkle, retention
from sellervault.audit.chain import GENESIS, body_mac, event_body, macs_equal
from sellervault.audit.models import CheckpointRow
from sellervault.audit.writing import EVENTS, HEAD_ID, HEADS, LOG_KEY
from sellervault.crypto.keyring import Keyring
from sellervault.crypto.signatures import VerifyKey
from sellervault.store.engine import Store

VERIFY_BATCH = 5000


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    events: int
    first_bad_seq: int | None = None
    problem: str | None = None
    checkpoints: int = 0


# The event `init` writes first (channel, action, outcome, actor): the first administrator's
# creation, from the command line, by nobody. A chain that does not begin with it was started
# again after the log was emptied (no other writer ever records that event with no actor).
INIT_EVENT = ("cli", "accounts:create", "success", None)
_EVENTS_FROM = select(EVENTS).where(EVENTS.c.seq >= bindparam("first"),
                                     EVENTS.c.seq <= bindparam("last")).order_by(EVENTS.c.seq)
_READ_HEAD = select(HEADS.c.seq, HEADS.c.hash).where(HEADS.c.id == HEAD_ID)
_EVENTS_AFTER = select(func.count()).select_from(EVENTS).where(
    EVENTS.c.seq > bindparam("last"))


def verify(store: Store, keyring: Keyring,
           on_batch: Callable[[int], None] | None = None,
           checkpoint_file: Path | None = None) -> VerifyResult:
    """Check the head, every MAC, every link and the sequence, and that the chain begins
    with init's first event; stop at the first bad event.

    It reads one snapshot (``Store.snapshot``), up to the head as it was then: events
    appended meanwhile by a running server are neither seen nor waited for, and no write
    waits for the walk. ``on_batch`` is called with the last verified sequence number after
    each batch (progress). ``checkpoint_file``: the file the checkpoints are also appended
    to (none: the database's checkpoints only)."""
    with store.snapshot() as connection:
        log_key = keyring.find_system_key(connection, LOG_KEY)
        head = connection.execute(_READ_HEAD).first()
        if head is None or log_key is None:
            missing = "head" if head is None else "key"
            return VerifyResult(False, 0, 1, f"the log's {missing} is missing: an initialised "
                                             "vault always has one")
        if head.seq < 1:
            return VerifyResult(False, 0, 1, "the log is empty: an initialised vault always "
                                             "holds its init events")
        public_key = checkpoints.find_public_key(keyring, connection)
        rows = _checkpoint_rows(connection)
        start = _start(retention.removal_rows(connection), rows, public_key)
        if isinstance(start, str):
            return VerifyResult(False, 0, 1, start)
        signed = _Checkpoints(rows, public_key, start.frontier)
        result, last_hash = _walk(connection, log_key, head.seq, on_batch, signed, start)
        if result is not None:
            return result
        if not macs_equal(head.hash, last_hash):
            return VerifyResult(False, head.seq, head.seq + 1,
                                f"the log ends at event {head.seq} but its head says otherwise")
        after = connection.execute(_EVENTS_AFTER, {"last": head.seq}).scalar_one()
        if after:
            return VerifyResult(False, head.seq, head.seq + 1,
                                f"the log ends at event {head.seq + after} but its head says "
                                f"{head.seq}")
        in_file = checkpoints.read_file(checkpoint_file) if checkpoint_file is not None \
            else None
        problem = signed.problem or signed.check(
            head.seq, None if in_file is None else checkpoints.checkpoint_lines(in_file))
        if problem is None and in_file is not None:
            problem = _check_removals_file(retention.removal_rows(connection),
                                           checkpoints.removal_lines(in_file))
        if problem is not None:
            return VerifyResult(False, head.seq, signed.first_bad_seq or head.seq + 1, problem,
                                len(signed.rows))
    return VerifyResult(True, head.seq, checkpoints=len(signed.rows))


def _checkpoint_rows(connection: Connection) -> list[Any]:
    """The checkpoints, in order; none in a database migrated below them (a dropped table
    hides nothing from the checkpoint file: it still holds them)."""
    if not inspect(connection).has_table(CheckpointRow.__tablename__):
        return []
    return list(connection.execute(select(CheckpointRow).order_by(CheckpointRow.number)))


@dataclass(frozen=True, slots=True)
class _Start:
    """Where the log begins: after the events the retention job removed (none: event 1)."""

    removed_through: int = 0
    prev_hash: str = GENESIS
    frontier: merkle.Frontier | None = None


def _start(removals: list[Any], rows: list[Any],
           public_key: VerifyKey | None) -> _Start | str:
    """Where the walk starts, from the removal statements; or what is wrong with them."""
    if not removals:
        return _Start()
    if public_key is None:
        return "removal statements exist but the checkpoint key is missing"
    previous: Any = None
    removal: retention.Removal | None = None
    for number, row in enumerate(removals, start=1):
        try:
            removal = retention.Removal.parse(row.statement.encode())
        except (ValueError, KeyError, TypeError):
            return f"removal {row.number} is not a removal statement"
        if row.number != number or removal.number != number:
            return f"removal {number} is missing"
        if removal.key != public_key.key_id \
                or not public_key.verifies(row.statement.encode(), row.signature):
            return f"removal {number} is not signed by the checkpoint key"
        if row.removed_through != removal.removed_through or removal.previous != (
                None if previous is None else checkpoints.statement_hash(
                    previous.statement.encode())) or (
                previous is not None and removal.removed_through <= previous.removed_through):
            return f"removal {number} does not follow removal {number - 1}"
        if retention.younger_than_the_floor(removal):
            return f"removal {number} removed events younger than 365 days"
        previous = row
    assert removal is not None
    covering = [row for row in rows if row.number == removal.checkpoint]
    if not covering or covering[0].tree_size != removal.removed_through:
        return (f"removal {removal.number} names checkpoint {removal.checkpoint}, which does "
                f"not cover the {removal.removed_through} events it removed")
    frontier = merkle.Frontier(removal.removed_through,
                               [bytes.fromhex(h) for h in json.loads(covering[0].frontier)])
    return _Start(removal.removed_through, removal.last_hash, frontier)


def _walk(connection: Connection, log_key: bytes, last: int,
          on_batch: Callable[[int], None] | None,
          signed: _Checkpoints, start: _Start) -> tuple[VerifyResult | None, str]:
    """The first bad event among the kept ones up to ``last`` (None when all of them are
    good), and the hash of the last good one."""
    prev_hash = start.prev_hash
    expected = start.removed_through + 1
    while expected <= last:
        rows = connection.execute(_EVENTS_FROM, {"first": expected, "last": min(
            last, expected + VERIFY_BATCH - 1)}).all()
        if not rows:
            break
        names = rows[0]._fields  # (a dict made in C per row: the mapping's get is slow)
        bodies = [event_body(dict(zip(names, row, strict=True))) for row in rows]
        if _batch_intact(rows, bodies, expected, prev_hash, log_key):
            prev_hash, expected = rows[-1].hash, expected + len(rows)
        else:  # walked again event by event, for the first bad one and its message
            for row, body in zip(rows, bodies, strict=True):
                problem = _problem(row, expected, prev_hash, log_key, body)
                if problem is not None:
                    return VerifyResult(False, expected - 1, expected, problem), prev_hash
                prev_hash = row.hash
                expected += 1
        for body in bodies:
            signed.add(merkle.leaf_hash(body))
        if on_batch is not None:
            on_batch(expected - 1)
    if expected <= last:
        return VerifyResult(False, expected - 1, expected,
                            f"the log ends at event {expected - 1} but its head says "
                            f"{last}"), prev_hash
    return None, prev_hash


def _batch_intact(rows: Sequence[Any], bodies: list[bytes], first: int, prev_hash: str,
                  log_key: bytes) -> bool:
    """Whether every event of the batch is in sequence, links to the one before and has its
    MAC: the links and the MACs each compared at once, in constant time, as one string."""
    if [row.seq for row in rows] != list(range(first, first + len(rows))) or (
            first == 1 and (rows[0].channel, rows[0].action, rows[0].outcome,
                            rows[0].actor_id) != INIT_EVENT):
        return False
    stored = [row.hash for row in rows]
    links = [row.prev_hash for row in rows]
    computed = [body_mac(log_key, link, body) for link, body in zip(links, bodies, strict=True)]
    return (macs_equal("".join(links), prev_hash + "".join(stored[:-1]))
            and macs_equal("".join(computed), "".join(stored)))


def _problem(row: Any, expected: int, prev_hash: str, log_key: bytes,
             body: bytes) -> str | None:
    if row.seq != expected:
        return f"event {expected} is missing"
    if not macs_equal(row.prev_hash, prev_hash):
        return f"event {row.seq} does not link to event {row.seq - 1}"
    if not macs_equal(body_mac(log_key, prev_hash, body), row.hash):
        return f"event {row.seq} was altered"
    if row.seq == 1 and (row.channel, row.action, row.outcome, row.actor_id) != INIT_EVENT:
        return "event 1 is not the init event the log begins with: the log was started again"
    return None




def _check_removals_file(rows: list[Any], in_file: list[dict[str, Any]]) -> str | None:
    """The file holds the database's removal statements in order, each the same; the
    database may be one ahead (a run that died between its commit and its append)."""
    for number, line in enumerate(in_file, start=1):
        if number > len(rows):
            return (f"the checkpoint file holds removal statement {number}, the database "
                    f"only {len(rows)}: statements were removed from the database")
        row = rows[number - 1]
        if (line.get("number"), line.get("statement"), line.get("signature")) != (
                row.number, row.statement, row.signature):
            return f"removal statement {number} differs between the database and the file"
    if len(rows) > len(in_file) + 1:
        return (f"the checkpoint file holds {len(in_file)} removal statements, the database "
                f"{len(rows)}: the file lost some")
    return None


class _Checkpoints:
    """The signed checkpoints: their signatures and links first (a root is only worth
    comparing once it is known to be signed), each root as the walk goes (when it has hashed
    as many events as the checkpoint covers), then coverage and the file (``check``)."""

    def __init__(self, rows: list[Any], public_key: VerifyKey | None,
                 start: merkle.Frontier | None = None) -> None:
        self.rows = rows
        self.problem: str | None = None
        self.first_bad_seq: int | None = None
        self._frontier = start.copy() if start is not None else merkle.Frontier()
        self._good_size = self._frontier.size  # the events compared checkpoints vouch for
        self._due: list[int] = []  # the checkpoints whose roots are still to compare
        self._parsed: list[checkpoints.Checkpoint] = []
        for row in rows:
            try:
                self._parsed.append(checkpoints.Checkpoint.parse(row.statement.encode()))
            except (ValueError, KeyError, TypeError):
                self._fail(f"checkpoint {row.number} is not a checkpoint statement", None)
                return
        signed = self._signed(public_key)
        if signed is not None:
            self._fail(signed, None)
            return
        # (A checkpoint of fewer events than were removed cannot be recomputed; the one the
        # removal names is compared at once: its stored range must give its signed root.)
        self._due = sorted((i for i in range(len(self._parsed))
                            if self._parsed[i].size >= self._frontier.size),
                           key=lambda i: self._parsed[i].size)
        self._compare_due()

    def add(self, leaf: bytes) -> None:
        self._frontier.append(leaf)
        self._compare_due()

    def _compare_due(self) -> None:
        while self._due and self.problem is None \
                and self._parsed[self._due[0]].size == self._frontier.size:
            checkpoint = self._parsed[self._due.pop(0)]
            if checkpoint.root != self._frontier.root().hex():
                self._fail(f"the events up to {checkpoint.size} are not the ones checkpoint "
                           f"{checkpoint.number} signed: the log was rewritten",
                           self._good_size + 1)
            self._good_size = checkpoint.size

    def _fail(self, problem: str, first_bad_seq: int | None) -> None:
        if self.problem is None:
            self.problem, self.first_bad_seq = problem, first_bad_seq

    def _signed(self, public_key: VerifyKey | None) -> str | None:
        """Signatures, numbering, links and order: the first problem, or None."""
        if self.rows and public_key is None:
            return "checkpoints exist but the checkpoint key is missing"
        previous: checkpoints.Checkpoint | None = None
        for number, (row, checkpoint) in enumerate(zip(self.rows, self._parsed, strict=True),
                                                   start=1):
            assert public_key is not None
            if row.number != number or checkpoint.number != number:
                return f"checkpoint {number} is missing"
            if checkpoint.size != row.tree_size or checkpoint.key != public_key.key_id \
                    or not public_key.verifies(row.statement.encode(), row.signature):
                return f"checkpoint {number} is not signed by the checkpoint key"
            if previous is not None and (
                    checkpoint.previous != checkpoints.statement_hash(
                        self.rows[number - 2].statement.encode())
                    or checkpoint.size < previous.size or checkpoint.time < previous.time):
                return f"checkpoint {number} does not follow checkpoint {number - 1}"
            if previous is None and checkpoint.previous is not None:
                return "checkpoint 1 links to a checkpoint before it"
            previous = checkpoint
        return None

    def check(self, events: int, in_file: list[dict[str, Any]] | None) -> str | None:
        """Once the walk is done: no checkpoint covers more events than the log holds, and
        the file agrees with the database. The first problem, or None."""
        for checkpoint in self._parsed:
            if checkpoint.size > events:
                return (f"checkpoint {checkpoint.number} covers {checkpoint.size} events but "
                        f"the log holds {events}: its newest events were removed")
        return None if in_file is None else self._check_file(in_file)

    def _check_file(self, in_file: list[dict[str, Any]]) -> str | None:
        """The file holds the database's checkpoints in order; the database may be one
        ahead (a process that died between its commit and its append)."""
        for number, line in enumerate(in_file, start=1):
            if number > len(self.rows):
                return (f"the checkpoint file holds checkpoint {number}, the database only "
                        f"{len(self.rows)}: checkpoints were removed or an older database "
                        "restored")
            row = self.rows[number - 1]
            if (line.get("number"), line.get("statement"), line.get("signature")) != (
                    row.number, row.statement, row.signature):
                return f"checkpoint {number} differs between the database and the file"
        if len(self.rows) > len(in_file) + 1:
            return (f"the checkpoint file ends at checkpoint {len(in_file)}, the database at "
                    f"{len(self.rows)}: the file was truncated")
        return None
