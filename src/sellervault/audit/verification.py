"""Verifying the security log: every MAC, every link, the sequence and the head, then the
signed checkpoints.

``verify`` reads one snapshot and names the first bad event: an edited, removed, reordered
or inserted event, a head that does not match the last event, events past the head, or a
chain that does not begin with ``init``'s first event (a log emptied and started again).
Then every checkpoint (``checkpoints``): its signature, its link to the one before, its
root against the events it covers (recomputed while walking them), and that none covers
more events than the log holds (a truncated tail, even with a rewritten head); and the
checkpoint file against the database (checkpoints deleted, or an old database restored).
The file is read after the walk: its lines beyond the snapshot (a checkpoint the job wrote
meanwhile) are compared with the database read afresh, and must be signed and chained on,
so a running server's job is not taken for a restored database; a line that is not a line
of the file's (garbage, half written) is named.

After the retention job removed a prefix of the log (``retention``), the walk starts from
the newest removal statement: every statement signed, numbered and chained, none removing
what the 365-day floor protects (the checkpoint it names signed at least 365 days before
it: the events' own times are not signed); the first event kept links to the last one
removed; the Merkle tree continues from the compact range of the checkpoint the statement
names (whose signed root it must give). Checkpoints of the removed prefix keep their
signatures and links checked; their roots cannot be recomputed (their events are gone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
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
    # Not part of the verdict (results compare without them): what an intact log still lacks.
    uncovered_since: str | None = field(default=None, compare=False)
    """When the oldest event no signed checkpoint covers yet was written (None: all are)."""
    waited: timedelta | None = field(default=None, compare=False)
    """How long that event has waited, when longer than ``CHECKPOINT_OVERDUE``
    (``checkpoints_overdue``): the log is intact, but nothing signs it."""


CHECKPOINT_OVERDUE = timedelta(minutes=10)
"""Ten intervals of the ``audit-checkpoint`` job (60 s): longer, and no server runs it. The
chain's MACs still hold the uncovered events, but only someone without the log key is kept
from rewriting them: a signed checkpoint is what keeps the key's holders honest too."""


# The event `init` writes first (channel, action, outcome, actor): the first administrator's
# creation, from the command line, by nobody. A chain that does not begin with it was started
# again after the log was emptied (no other writer ever records that event with no actor).
INIT_EVENT = ("cli", "accounts:create", "success", None)
_EVENTS_FROM = select(EVENTS).where(EVENTS.c.seq >= bindparam("first"),
                                     EVENTS.c.seq <= bindparam("last")).order_by(EVENTS.c.seq)
_READ_HEAD = select(HEADS.c.seq, HEADS.c.hash).where(HEADS.c.id == HEAD_ID)
_OCCURRED_AT = select(EVENTS.c.occurred_at).where(EVENTS.c.seq == bindparam("seq"))
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
        problem = signed.problem or signed.check(head.seq)
        if problem is None and checkpoint_file is not None:
            problem = _check_file(store, checkpoint_file, signed,
                                  retention.removal_rows(connection))
        if problem is not None:
            return VerifyResult(False, head.seq, signed.first_bad_seq or head.seq + 1, problem,
                                len(signed.rows))
        uncovered = None
        if signed.covered < head.seq:  # (an event the walk authenticated: its time is MAC'd)
            uncovered = connection.execute(_OCCURRED_AT, {"seq": signed.covered + 1}).scalar()
    return VerifyResult(True, head.seq, checkpoints=len(signed.rows), uncovered_since=uncovered)


def checkpoints_overdue(result: VerifyResult, now: datetime) -> VerifyResult:
    """``result`` with ``waited`` set when its oldest uncovered event is older than
    ``CHECKPOINT_OVERDUE`` at ``now``."""
    if result.uncovered_since is None:
        return result
    waited = now - datetime.fromisoformat(result.uncovered_since)
    return replace(result, waited=waited) if waited > CHECKPOINT_OVERDUE else result


def _check_file(store: Store, path: Path, signed: _Checkpoints,
                removals: list[Any]) -> str | None:
    """The checkpoint file against the database: its checkpoints, then its removal
    statements; a line that is neither is named, not a crash."""
    try:
        in_file = checkpoints.read_file(path)
    except checkpoints.CheckpointFileError as exc:
        return str(exc)
    return signed.check_file(checkpoints.checkpoint_lines(in_file),
                             lambda after: _later_checkpoint_rows(store, after)) \
        or _check_removals_file(removals, checkpoints.removal_lines(in_file))


def _later_checkpoint_rows(store: Store, after: int) -> list[Any]:
    """The checkpoints numbered after ``after``, read afresh: the file is read after the
    snapshot, so a checkpoint the job wrote during the walk is in the file but not in the
    snapshot."""
    with store.snapshot() as connection:
        if not inspect(connection).has_table(CheckpointRow.__tablename__):
            return []
        return list(connection.execute(select(CheckpointRow).where(
            CheckpointRow.number > after).order_by(CheckpointRow.number)))


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


def log_start(connection: Connection, public_key: VerifyKey | None) -> _Start | str:
    """Where the kept log begins, or what is wrong with the removal statements: for the
    checkpoint job, which rebuilds a compact range from there."""
    return _start(retention.removal_rows(connection), _checkpoint_rows(connection), public_key)


def _start(removals: list[Any], rows: list[Any],
           public_key: VerifyKey | None) -> _Start | str:
    """Where the walk starts, from the removal statements; or what is wrong with them."""
    if not removals:
        return _Start()
    if public_key is None:
        return "removal statements exist but the checkpoint key is missing"
    previous: Any = None
    removal: retention.Removal | None = None
    covering: tuple[Any, checkpoints.Checkpoint] | str = ""
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
        covering = _covering(rows, removal, public_key)
        if isinstance(covering, str):
            return covering
        if retention.younger_than_the_floor(removal, covering[1].time):
            return f"removal {number} removed events younger than 365 days"
        previous = row
    assert removal is not None and not isinstance(covering, str)
    frontier = checkpoints.stored_frontier(covering[0].frontier, covering[1])
    if frontier is None:
        return (f"the compact range stored with checkpoint {removal.checkpoint} does not give "
                "its signed root")
    return _Start(removal.removed_through, removal.last_hash, frontier)


def _covering(rows: list[Any], removal: retention.Removal,
              public_key: VerifyKey) -> tuple[Any, checkpoints.Checkpoint] | str:
    """The checkpoint a removal names, as signed: it must cover exactly what was removed,
    and its signed time (not the removed events' own times, which are not signed) is what
    the 365-day floor is measured on."""
    found = [row for row in rows if row.number == removal.checkpoint]
    if not found or found[0].tree_size != removal.removed_through:
        return (f"removal {removal.number} names checkpoint {removal.checkpoint}, which does "
                f"not cover the {removal.removed_through} events it removed")
    signed = checkpoints.signed_checkpoint(found[0], public_key)
    if signed is None:
        return f"checkpoint {removal.checkpoint} is not signed by the checkpoint key"
    return found[0], signed


def _walk(connection: Connection, log_key: bytes, last: int,
          on_batch: Callable[[int], None] | None,
          signed: _Checkpoints, start: _Start) -> tuple[VerifyResult | None, str]:
    """The first bad event among the kept ones up to ``last`` (None when all of them are
    good), and the hash of the last good one."""
    prev_hash = start.prev_hash
    expected = start.removed_through + 1
    try:
        for rows, bodies in _intact_batches(connection, log_key, expected, last, prev_hash):
            prev_hash, expected = rows[-1].hash, expected + len(rows)
            for body in bodies:
                signed.add(merkle.leaf_hash(body))
            if on_batch is not None:
                on_batch(expected - 1)
    except BrokenLogError as exc:
        return VerifyResult(False, exc.seq - 1, exc.seq, str(exc)), exc.good_hash
    if expected <= last:
        return VerifyResult(False, expected - 1, expected,
                            f"the log ends at event {expected - 1} but its head says "
                            f"{last}"), prev_hash
    return None, prev_hash


class BrokenLogError(ValueError):
    """An event that is not as its writer wrote it: its number ``seq`` and the MAC of the
    good one before it (``good_hash``)."""

    def __init__(self, seq: int, good_hash: str, problem: str) -> None:
        super().__init__(problem)
        self.seq, self.good_hash = seq, good_hash


def authenticated_leaves(connection: Connection, log_key: bytes, first: int, last: int,
                         prev_hash: str) -> Iterator[tuple[bytes, str]]:
    """The leaf hash and MAC of each event ``first..last``, in order, each checked as the
    walk checks it (``_intact_batches``); ``BrokenLogError`` at the first that is not, or is
    missing: the checkpoint job signs only what this authenticated."""
    expected = first
    for rows, bodies in _intact_batches(connection, log_key, first, last, prev_hash):
        for row, body in zip(rows, bodies, strict=True):
            yield merkle.leaf_hash(body), row.hash
        prev_hash, expected = rows[-1].hash, expected + len(rows)
    if expected <= last:
        raise BrokenLogError(expected, prev_hash, f"event {expected} is missing")


def _intact_batches(connection: Connection, log_key: bytes, first: int, last: int,
                    prev_hash: str) -> Iterator[tuple[Sequence[Any], list[bytes]]]:
    """Events ``first..last`` a batch at a time with their canonical bodies, each batch
    checked whole (in sequence, linked to ``prev_hash`` and then to the one before, its MAC;
    ``BrokenLogError`` at the first bad event); ends early where events are missing (the
    caller, knowing how many it got, says so)."""
    expected = first
    while expected <= last:
        rows = connection.execute(_EVENTS_FROM, {"first": expected, "last": min(
            last, expected + VERIFY_BATCH - 1)}).all()
        if not rows:
            return
        names = rows[0]._fields  # (a dict made in C per row: the mapping's get is slow)
        bodies = [event_body(dict(zip(names, row, strict=True))) for row in rows]
        if not _batch_intact(rows, bodies, expected, prev_hash, log_key):
            bad = _first_problem(rows, bodies, expected, prev_hash, log_key)
            if bad is not None:
                raise BrokenLogError(*bad)
        yield rows, bodies
        prev_hash, expected = rows[-1].hash, expected + len(rows)


def _first_problem(rows: Sequence[Any], bodies: list[bytes], first: int, prev_hash: str,
                   log_key: bytes) -> tuple[int, str, str] | None:
    """A batch that is not intact walked again event by event: the first bad event's
    number, the hash of the good one before it, and what is wrong."""
    for expected, (row, body) in enumerate(zip(rows, bodies, strict=True), start=first):
        problem = _problem(row, expected, prev_hash, log_key, body)
        if problem is not None:
            return expected, prev_hash, problem
        prev_hash = row.hash
    return None


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


def _signed_chain(rows: list[Any], public_key: VerifyKey | None,
                  before: checkpoints.Checkpoint | None = None,
                  ) -> list[checkpoints.Checkpoint] | str:
    """The checkpoints the rows state, if each is signed, numbered and chained to the one
    before (the first to ``before``, already checked: none for checkpoint 1); else the first
    problem."""
    parsed: list[checkpoints.Checkpoint] = []
    for row in rows:
        try:
            parsed.append(checkpoints.Checkpoint.parse(row.statement.encode()))
        except (ValueError, KeyError, TypeError):
            return f"checkpoint {row.number} is not a checkpoint statement"
    if rows and public_key is None:
        return "checkpoints exist but the checkpoint key is missing"
    previous = before
    for row, checkpoint in zip(rows, parsed, strict=True):
        assert public_key is not None
        number = 1 if previous is None else previous.number + 1
        if row.number != number or checkpoint.number != number:
            return f"checkpoint {number} is missing"
        if checkpoint.size != row.tree_size or checkpoint.key != public_key.key_id \
                or not public_key.verifies(row.statement.encode(), row.signature):
            return f"checkpoint {number} is not signed by the checkpoint key"
        if previous is not None and (
                checkpoint.previous != checkpoints.statement_hash(previous.statement())
                or checkpoint.size < previous.size or checkpoint.time < previous.time):
            return f"checkpoint {number} does not follow checkpoint {number - 1}"
        if previous is None and checkpoint.previous is not None:
            return "checkpoint 1 links to a checkpoint before it"
        previous = checkpoint
    return parsed


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
        self._public_key = public_key
        self._parsed: list[checkpoints.Checkpoint] = []
        parsed = _signed_chain(rows, public_key)
        if isinstance(parsed, str):
            self._fail(parsed, None)
            return
        self._parsed = parsed
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

    @property
    def covered(self) -> int:
        """The events the newest signed checkpoint covers."""
        return self._parsed[-1].size if self._parsed else 0

    def check(self, events: int) -> str | None:
        """Once the walk is done: no checkpoint covers more events than the log holds. The
        first problem, or None."""
        for checkpoint in self._parsed:
            if checkpoint.size > events:
                return (f"checkpoint {checkpoint.number} covers {checkpoint.size} events but "
                        f"the log holds {events}: its newest events were removed")
        return None

    def check_file(self, in_file: list[dict[str, Any]],
                   read_later: Callable[[int], list[Any]]) -> str | None:
        """The file holds the database's checkpoints in order; the database may be one
        ahead (a process that died between its commit and its append). The file is read
        after the snapshot: lines beyond it (checkpoints written during the walk) are
        compared with the database read afresh (``read_later``), whose rows must be signed
        and chained on from the snapshot's, else the file is ahead of the database."""
        rows = self.rows
        if len(in_file) > len(rows):
            later = read_later(len(rows))
            chained = _signed_chain(later, self._public_key,
                                    self._parsed[-1] if self._parsed else None)
            if isinstance(chained, str):
                return chained
            rows = rows + later
        for number, line in enumerate(in_file, start=1):
            if number > len(rows):
                return (f"the checkpoint file holds checkpoint {number}, the database only "
                        f"{len(rows)}: checkpoints were removed or an older database "
                        "restored")
            row = rows[number - 1]
            if (line.get("number"), line.get("statement"), line.get("signature")) != (
                    row.number, row.statement, row.signature):
                return f"checkpoint {number} differs between the database and the file"
        if len(self.rows) > len(in_file) + 1:
            return (f"the checkpoint file ends at checkpoint {len(in_file)}, the database at "
                    f"{len(self.rows)}: the file was truncated")
        return None
