"""Writing and verifying the security log.

``record`` appends an event inside the caller's transaction, so an operation and its event
commit together or not at all. ``append`` writes an event on its own, committed before it
returns: for an operation that changes nothing else (a read, a reveal); in a server's event
loop on PostgreSQL, the events of requests appending at the same moment go in together, one
statement and one commit for all. ``verify`` walks the chain and names the
first bad event.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from pydantic_core import to_json
from sqlalchemy import (
    JSON,
    Connection,
    Engine,
    String,
    Table,
    Text,
    bindparam,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy import column as sql_column
from sqlalchemy.orm import Session

from sellervault.audit.chain import CHAINED_FIELDS, GENESIS, event_mac, macs_equal
from sellervault.audit.errors import (
    ChainAlreadyStartedError,
    ChainHeadMissingError,
    LogKeyMissingError,
)
from sellervault.audit.events import Actor, Outcome, SecurityEvent
from sellervault.audit.models import ChainHead, EventRow
from sellervault.crypto.keyring import Keyring
from sellervault.store.driver import Db, DriverConnection, driver_of
from sellervault.store.engine import Store, after_commit
from sellervault.store.prepared import Prepared

log = logging.getLogger("sellervault.audit")

LOG_KEY = "security-log"
HEAD_ID = 1
VERIFY_BATCH = 5000


def _now_iso() -> str:
    """UTC, microseconds, "Z": 2026-11-29T04:12:13.123456Z (isoformat is strftime's format
    here, and faster)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


# Built once and run as prepared statements on the driver's connection, so appending an event
# costs no expression building, no ORM bookkeeping and no SQLAlchemy execution machinery.
_EVENTS = cast(Table, EventRow.__table__)
_HEADS = cast(Table, ChainHead.__table__)
_LOCK_HEAD = Prepared(select(_HEADS.c.seq, _HEADS.c.hash).where(_HEADS.c.id == HEAD_ID)
                      .with_for_update())
_EVENT_VALUES = {column.name: bindparam(column.name, type_=column.type)
                 for column in _EVENTS.columns}
_INSERT_EVENT = Prepared(insert(_EVENTS).values(_EVENT_VALUES))
_INSERT_HEAD = Prepared(insert(_HEADS).values(id=HEAD_ID, seq=bindparam("new_seq"),
                                              hash=bindparam("new_hash")))
_MOVE_HEAD = (update(_HEADS).where(_HEADS.c.id == HEAD_ID)
              .values(seq=bindparam("new_seq"), hash=bindparam("new_hash")))
# Compare-and-swap: moves the head only if it is still exactly the one this process last saw.
_MOVE_HEAD_FROM = _MOVE_HEAD.where(_HEADS.c.seq == bindparam("old_seq"),
                                   _HEADS.c.hash == bindparam("old_hash"))
_MOVE_HEAD_ANYWAY = Prepared(_MOVE_HEAD)  # (after _LOCK_HEAD)
_MOVE_HEAD_IF_UNMOVED = Prepared(_MOVE_HEAD_FROM)
# PostgreSQL: standalone events (one, or a batch from the event loop) as one statement, so one
# round trip and one transaction (one commit, one log flush): the head moves from the guess to
# the last of them (compare-and-swap), and the rows are inserted only if it did. The rows travel
# as one JSON parameter (PostgreSQL's json_to_recordset): as cheap to send as one event's
# scalars, where arrays of each column cost psycopg twice that. Text is cast on insert to the
# column's VARCHAR(n), which refuses a longer value as the one-row insert does.
_BATCH_COLUMNS = [column.name for column in _EVENTS.columns]
_batch = func.json_to_recordset(sql_cast(bindparam("rows", type_=String()), JSON)).table_valued(*[
    sql_column(column.name, Text() if isinstance(column.type, String) else column.type)
    for column in _EVENTS.columns
]).render_derived(name="batch", with_types=True)
_APPEND_IF_UNMOVED = Prepared(insert(_EVENTS).from_select(
    _BATCH_COLUMNS,
    select(*[_batch.c[name] for name in _BATCH_COLUMNS])
    .where(exists(select(_MOVE_HEAD_FROM.returning(_HEADS.c.seq).cte("moved").c.seq)))))

# The head this process last wrote, per database. Only a guess: it saves reading the head
# when no other writer (thread or process) has moved it since, and the compare-and-swap above
# checks it against the database before anything is written.
_last_heads: weakref.WeakKeyDictionary[Engine, tuple[int, str]] = weakref.WeakKeyDictionary()


def record(db: Db, keyring: Keyring, event: SecurityEvent, *,
           starts_chain: bool = False) -> int:
    """Append ``event`` to the chain, in the caller's transaction; its sequence number.

    Only ``init`` passes ``starts_chain`` (its first event creates the head); for every other
    writer a missing head is a log that was wiped, and nothing is written
    (``ChainHeadMissingError``)."""
    connection = driver_of(db)  # a session's pending changes go first
    log_key = _log_key(connection, keyring, starts_chain)
    guess = None if starts_chain else _last_heads.get(connection.engine)
    if guess is not None:
        row = _chained(event, log_key, guess)
        if _MOVE_HEAD_IF_UNMOVED.execute(connection, _head_move(row, guess)) == 1:
            return _insert(connection, row)
    # The first event of this process, or another writer moved the head: read it, locked.
    head = _LOCK_HEAD.first(connection, {})
    if starts_chain:
        if head is not None:
            raise ChainAlreadyStartedError()
        row = _chained(event, log_key, (0, GENESIS))
        _INSERT_HEAD.execute(connection, {"new_seq": row["seq"], "new_hash": row["hash"]})
        return _insert(connection, row)
    if head is None or head.seq < 1:  # (init's first event is 1: a head at 0 was reset)
        raise ChainHeadMissingError()
    row = _chained(event, log_key, (head.seq, head.hash))
    _MOVE_HEAD_ANYWAY.execute(connection, {"new_seq": row["seq"], "new_hash": row["hash"]})
    return _insert(connection, row)


def _log_key(connection: DriverConnection, keyring: Keyring, starts_chain: bool) -> bytes:
    """The security-log key; only the chain's start may create it."""
    if starts_chain:
        return keyring.system_key(connection, LOG_KEY)
    key = keyring.find_system_key(connection, LOG_KEY)
    if key is None:
        raise LogKeyMissingError()
    return key


def _chained(event: SecurityEvent, log_key: bytes, head: tuple[int, str]) -> dict[str, Any]:
    """The event's row as the successor of ``head`` (its seq and hash)."""
    return _chained_fields(event.fields(), log_key, head)


def _chained_fields(row: dict[str, Any], log_key: bytes,
                    head: tuple[int, str]) -> dict[str, Any]:
    row["occurred_at"] = _now_iso()
    row["seq"] = head[0] + 1
    row["prev_hash"] = head[1]
    row["hash"] = event_mac(log_key, head[1], row)
    return row


def _chained_from_guess(fields: list[dict[str, Any]], log_key: bytes,
                        guess: tuple[int, str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of events chained one after another from ``guess``, and the parameters with which
    ``_APPEND_IF_UNMOVED`` writes them all."""
    rows, head = [], guess
    for row in fields:
        rows.append(_chained_fields(row, log_key, head))
        head = (rows[-1]["seq"], rows[-1]["hash"])
    return rows, {"rows": to_json(rows).decode(), "new_seq": head[0], "new_hash": head[1],
                  "old_seq": guess[0], "old_hash": guess[1]}


def _head_move(row: dict[str, Any], guess: tuple[int, str]) -> dict[str, Any]:
    return {"new_seq": row["seq"], "new_hash": row["hash"], "old_seq": guess[0],
            "old_hash": guess[1]}


def _insert(connection: DriverConnection, row: dict[str, Any]) -> int:
    _INSERT_EVENT.execute(connection, row)
    return _remember(connection.engine, row)


def _remember(engine: Engine, row: dict[str, Any]) -> int:
    seq: int = row["seq"]
    _last_heads[engine] = (seq, row["hash"])
    return seq


# Standalone appends of this process take turns on PostgreSQL, so each one's guess of the head
# is the one before it (held for one round trip); on SQLite the writer lock does that.
_standalone = threading.Lock()


def _append_now(store: Store, keyring: Keyring, event: SecurityEvent) -> int:
    """``append``'s blocking step: on PostgreSQL one statement (compare-and-swap of the head
    and insert) on an autocommit connection; if another writer moved the head, or on SQLite,
    a short transaction of its own."""
    if store.dialect == "postgresql":
        with _standalone, store.read() as connection:
            guess = _last_heads.get(connection.engine)
            if guess is not None:
                rows, params = _chained_from_guess(
                    [event.fields()], _log_key(connection, keyring, False), guess)
                if _APPEND_IF_UNMOVED.execute(connection, params):
                    return _remember(connection.engine, rows[0])
                _last_heads.pop(connection.engine, None)  # stale: read the head instead
    with store.write() as connection:
        return record(connection, keyring, event)


BATCH_LIMIT = 64  # events per statement; more wait for the next turn


class _Batches:
    """The appends of one event loop to one database, taking turns (an asyncio lock): a
    caller's turn writes every event waiting by then, its own and those of callers still
    queued for the lock, who then find theirs done. Under load a turn is one round trip and
    one commit for several events, where a turn per event made every request queue for the
    one before."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.turn = asyncio.Lock()
        self.waiting: list[tuple[dict[str, Any], asyncio.Future[int | None]]] = []

    async def append(self, log_key: bytes, event: SecurityEvent) -> int | None:
        """The event's sequence number, or None when it must take the blocking path."""
        done: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self.waiting.append((event.fields(), done))
        async with self.turn:
            while not done.done():  # (more than BATCH_LIMIT were waiting before this one)
                batch = self.waiting[:BATCH_LIMIT]
                del self.waiting[:BATCH_LIMIT]
                await _write_batch(self.store, log_key, batch)
        return done.result()


async def _write_batch(store: Store, log_key: bytes,
                       batch: list[tuple[dict[str, Any], asyncio.Future[int | None]]]) -> None:
    """Chain and write ``batch``; settle each caller's future with its sequence number, or
    with None: then each appends on its own through the blocking path, which reads the head
    (the guess was wrong) and raises its own error (the batch failed: so one event the
    database refuses does not fail the others, and a database that is down fails them all)."""
    engine = store.engine
    guess = _last_heads.get(engine)
    written = 0
    try:
        if guess is not None:
            rows, params = _chained_from_guess([fields for fields, _ in batch], log_key, guess)
            async with store.connect() as connection:
                written = await connection.execute(_APPEND_IF_UNMOVED, params)
    except Exception as exc:
        log.warning("a batch of %d security events was not written (%s): each is retried "
                    "on its own", len(batch), type(exc).__name__)
    finally:  # (also when this turn is cancelled: the others retry on their own)
        if written == len(batch):
            _remember(engine, rows[-1])
            for row, (_, done) in zip(rows, batch, strict=True):
                done.set_result(row["seq"])
        else:  # (a failed batch may or may not have committed: read the head again)
            _last_heads.pop(engine, None)
            for _, done in batch:
                done.set_result(None)


_batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Engine, _Batches]] = (
    weakref.WeakKeyDictionary())


async def append(store: Store, keyring: Keyring, event: SecurityEvent) -> int:
    """Append ``event`` on its own, committed when this returns; its sequence number.

    In a server's event loop on PostgreSQL (``Store.in_event_loop``), events waiting at once
    are written together, in one statement (see ``_Batches``). Elsewhere, and for the first
    event of the process, a head moved by another writer or a log key not unwrapped yet, the
    blocking step (``_append_now``), on a worker thread if called from the loop."""
    log_key = keyring.cached_system_key(LOG_KEY)
    if log_key is not None and store.engine in _last_heads and store.in_event_loop:
        of_loop = _batches.setdefault(asyncio.get_running_loop(), {})
        batches = of_loop.get(store.engine) or of_loop.setdefault(store.engine,
                                                                  _Batches(store))
        seq = await batches.append(log_key, event)
        if seq is not None:
            return seq
    return await store.offload(_append_now, store, keyring, event)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    events: int
    first_bad_seq: int | None = None
    problem: str | None = None


# The event `init` writes first (channel, action, outcome, actor): the first administrator's
# creation, from the command line, by nobody. A chain that does not begin with it was started
# again after the log was emptied (no other writer ever records that event with no actor).
INIT_EVENT = ("cli", "accounts:create", "success", None)
_EVENTS_FROM = select(_EVENTS).where(_EVENTS.c.seq >= bindparam("first"),
                                     _EVENTS.c.seq <= bindparam("last")).order_by(_EVENTS.c.seq)
_READ_HEAD = select(_HEADS.c.seq, _HEADS.c.hash).where(_HEADS.c.id == HEAD_ID)
_EVENTS_AFTER = select(func.count()).select_from(_EVENTS).where(
    _EVENTS.c.seq > bindparam("last"))


def verify(store: Store, keyring: Keyring,
           on_batch: Callable[[int], None] | None = None) -> VerifyResult:
    """Check the head, every MAC, every link and the sequence, and that the chain begins
    with init's first event; stop at the first bad event.

    It reads one snapshot (``Store.snapshot``), up to the head as it was then: events
    appended meanwhile by a running server are neither seen nor waited for, and no write
    waits for the walk. ``on_batch`` is called with the last verified sequence number after
    each batch (progress)."""
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
        result, last_hash = _walk(connection, log_key, head.seq, on_batch)
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
    return VerifyResult(True, head.seq)


def _walk(connection: Connection, log_key: bytes, last: int,
          on_batch: Callable[[int], None] | None) -> tuple[VerifyResult | None, str]:
    """The first bad event among 1..``last`` (None when all of them are good), and the hash
    of the last good one."""
    prev_hash = GENESIS
    expected = 1
    while expected <= last:
        rows = connection.execute(_EVENTS_FROM, {"first": expected, "last": min(
            last, expected + VERIFY_BATCH - 1)}).all()
        if not rows:
            break
        for row in rows:
            problem = _problem(row, expected, prev_hash, log_key)
            if problem is not None:
                return VerifyResult(False, expected - 1, expected, problem), prev_hash
            prev_hash = row.hash
            expected += 1
        if on_batch is not None:
            on_batch(expected - 1)
    if expected <= last:
        return VerifyResult(False, expected - 1, expected,
                            f"the log ends at event {expected - 1} but its head says "
                            f"{last}"), prev_hash
    return None, prev_hash


def _problem(row: Any, expected: int, prev_hash: str, log_key: bytes) -> str | None:
    if row.seq != expected:
        return f"event {expected} is missing"
    if not macs_equal(row.prev_hash, prev_hash):
        return f"event {row.seq} does not link to event {row.seq - 1}"
    fields = {name: getattr(row, name) for name in CHAINED_FIELDS}
    if not macs_equal(event_mac(log_key, prev_hash, fields), row.hash):
        return f"event {row.seq} was altered"
    if row.seq == 1 and (row.channel, row.action, row.outcome, row.actor_id) != INIT_EVENT:
        return "event 1 is not the init event the log begins with: the log was started again"
    return None


def count_events(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(EventRow)) or 0


def list_events(session: Session, after_seq: int = 0, limit: int = 100) -> list[EventRow]:
    return list(session.scalars(
        select(EventRow).where(EventRow.seq > after_seq).order_by(EventRow.seq).limit(limit)
    ))


class Auditor:
    """Records the events of one request or command, and knows whether one was committed.

    The web layer writes a fallback event for a request only when no service committed one,
    so every request ends with exactly one event, success or failure. ``init``'s auditor
    ``starts_chain``: its first event creates the chain's head (see ``record``).
    """

    def __init__(self, keyring: Keyring, actor: Actor, *, starts_chain: bool = False) -> None:
        self.keyring = keyring
        self.actor = actor
        self.committed = False
        self._starts_chain = starts_chain

    def _mark_committed(self) -> None:
        self.committed = True

    def record(self, db: Session | DriverConnection, action: str, outcome: Outcome,
               **fields: Any) -> int:
        """An event in the transaction of ``db`` (see ``record``)."""
        seq = record(db, self.keyring, SecurityEvent(action, outcome, self.actor, **fields),
                     starts_chain=self._starts_chain)
        self._starts_chain = False
        after_commit(db, self._mark_committed)
        return seq

    async def append(self, store: Store, action: str, outcome: Outcome, **fields: Any) -> int:
        """An event committed on its own (see ``append``)."""
        seq = await append(store, self.keyring,
                           SecurityEvent(action, outcome, self.actor, **fields))
        self.committed = True
        return seq


def read_events(store: Store, auditor: Auditor, after_seq: int = 0,
                limit: int = 100) -> list[dict[str, Any]]:
    """A page of the log for a reader; the read itself is an event."""
    with store.transaction() as session:
        rows = list_events(session, after_seq=after_seq, limit=limit)
        auditor.record(session, "audit:read", Outcome.SUCCESS, target_type="security_event",
                       count=len(rows))
        return [{**{name: getattr(row, name) for name in CHAINED_FIELDS}, "hash": row.hash}
                for row in rows]
