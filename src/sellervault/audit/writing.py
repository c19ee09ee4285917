"""Writing and chaining the security log: each event the successor of the head.

``record`` appends an event inside the caller's transaction, so an operation and its event
commit together or not at all. ``write_standalone`` writes one on its own (``batching.append``
calls it where events are not batched). Every writer of every process moves one head row
(``ChainHead``): by compare-and-swap from the head this process last wrote (no read when no
one else wrote since), else by reading it locked. Each event's place is handed to the log's
subscribers (``AuditLog.committed``) when its transaction ends, so they hear of it in chain
order, once, after it commits.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, cast

from pydantic_core import to_json
from sqlalchemy import (
    JSON,
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

from sellervault.audit.chain import GENESIS, event_mac
from sellervault.audit.errors import (
    ChainAlreadyStartedError,
    ChainHeadMissingError,
    LogKeyMissingError,
)
from sellervault.audit.events import SecurityEvent
from sellervault.audit.log import AuditLog
from sellervault.audit.models import ChainHead, EventRow
from sellervault.store.driver import DriverConnection, driver_of
from sellervault.store.engine import Store, after_commit, after_rollback
from sellervault.store.prepared import Prepared

LOG_KEY = "security-log"
HEAD_ID = 1


# Built once and run as prepared statements on the driver's connection, so appending an event
# costs no expression building, no ORM bookkeeping and no SQLAlchemy execution machinery.
EVENTS = cast(Table, EventRow.__table__)
HEADS = cast(Table, ChainHead.__table__)
_LOCK_HEAD = Prepared(select(HEADS.c.seq, HEADS.c.hash).where(HEADS.c.id == HEAD_ID)
                      .with_for_update())
_EVENT_VALUES = {column.name: bindparam(column.name, type_=column.type)
                 for column in EVENTS.columns}
_INSERT_EVENT = Prepared(insert(EVENTS).values(_EVENT_VALUES))
_INSERT_HEAD = Prepared(insert(HEADS).values(id=HEAD_ID, seq=bindparam("new_seq"),
                                              hash=bindparam("new_hash")))
_MOVE_HEAD = (update(HEADS).where(HEADS.c.id == HEAD_ID)
              .values(seq=bindparam("new_seq"), hash=bindparam("new_hash")))
# Compare-and-swap: moves the head only if it is still exactly the one this process last saw.
_MOVE_HEAD_FROM = _MOVE_HEAD.where(HEADS.c.seq == bindparam("old_seq"),
                                   HEADS.c.hash == bindparam("old_hash"))
_MOVE_HEAD_ANYWAY = Prepared(_MOVE_HEAD)  # (after _LOCK_HEAD)
_MOVE_HEAD_IF_UNMOVED = Prepared(_MOVE_HEAD_FROM)
# PostgreSQL: standalone events (one, or a batch from the event loop) as one statement, so one
# round trip and one transaction (one commit, one log flush): the head moves from the guess to
# the last of them (compare-and-swap), and the rows are inserted only if it did. The rows travel
# as one JSON parameter (PostgreSQL's json_to_recordset): as cheap to send as one event's
# scalars, where arrays of each column cost psycopg twice that. Text is cast on insert to the
# column's VARCHAR(n), which refuses a longer value as the one-row insert does.
_BATCH_COLUMNS = [column.name for column in EVENTS.columns]
_batch = func.json_to_recordset(sql_cast(bindparam("rows", type_=String()), JSON)).table_valued(*[
    sql_column(column.name, Text() if isinstance(column.type, String) else column.type)
    for column in EVENTS.columns
]).render_derived(name="batch", with_types=True)
APPEND_IF_UNMOVED = Prepared(insert(EVENTS).from_select(
    _BATCH_COLUMNS,
    select(*[_batch.c[name] for name in _BATCH_COLUMNS])
    .where(exists(select(_MOVE_HEAD_FROM.returning(HEADS.c.seq).cte("moved").c.seq)))))

# The head this process last wrote, per database. Only a guess: it saves reading the head
# when no other writer (thread or process) has moved it since, and the compare-and-swap above
# checks it against the database before anything is written.
_last_heads: weakref.WeakKeyDictionary[Engine, tuple[int, str]] = weakref.WeakKeyDictionary()


def record(db: Session | DriverConnection, log: AuditLog, event: SecurityEvent, *,
           starts_chain: bool = False) -> int:
    """Append ``event`` to the chain, in the caller's transaction (a ``Store.transaction``
    session or a ``Store.write`` connection); its sequence number.

    Only ``init`` passes ``starts_chain`` (its first event creates the head); for every other
    writer a missing head is a log that was wiped, and nothing is written
    (``ChainHeadMissingError``)."""
    connection = driver_of(db)  # a session's pending changes go first
    log_key = _log_key(connection, log, starts_chain)
    occurred_at = log.occurred_at()
    guess = None if starts_chain else _last_heads.get(connection.engine)
    if guess is not None:
        row = _chained(event.fields(), log_key, guess, occurred_at)
        if _MOVE_HEAD_IF_UNMOVED.execute(connection, _head_move(row, guess)) == 1:
            return _insert(db, connection, log, event, row)
    # The first event of this process, or another writer moved the head: read it, locked.
    head = _LOCK_HEAD.first(connection, {})
    if starts_chain:
        if head is not None:
            raise ChainAlreadyStartedError()
        row = _chained(event.fields(), log_key, (0, GENESIS), occurred_at)
        _INSERT_HEAD.execute(connection, {"new_seq": row["seq"], "new_hash": row["hash"]})
        return _insert(db, connection, log, event, row)
    if head is None or head.seq < 1:  # (init's first event is 1: a head at 0 was reset)
        raise ChainHeadMissingError()
    row = _chained(event.fields(), log_key, (head.seq, head.hash), occurred_at)
    _MOVE_HEAD_ANYWAY.execute(connection, {"new_seq": row["seq"], "new_hash": row["hash"]})
    return _insert(db, connection, log, event, row)


def _log_key(connection: DriverConnection, log: AuditLog, starts_chain: bool) -> bytes:
    """The security-log key; only the chain's start may create it."""
    if starts_chain:
        return log.keyring.system_key(connection, LOG_KEY)
    key = log.keyring.find_system_key(connection, LOG_KEY)
    if key is None:
        raise LogKeyMissingError()
    return key


def _chained(row: dict[str, Any], log_key: bytes, head: tuple[int, str],
             occurred_at: str) -> dict[str, Any]:
    """An event's row as the successor of ``head`` (its seq and hash)."""
    row["occurred_at"] = occurred_at
    row["seq"] = head[0] + 1
    row["prev_hash"] = head[1]
    row["hash"] = event_mac(log_key, head[1], row)
    return row


def chained_from_guess(fields: list[dict[str, Any]], log_key: bytes, guess: tuple[int, str],
                       occurred_at: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of events chained one after another from ``guess``, and the parameters with which
    ``APPEND_IF_UNMOVED`` writes them all."""
    rows, head = [], guess
    for row in fields:
        rows.append(_chained(row, log_key, head, occurred_at))
        head = (rows[-1]["seq"], rows[-1]["hash"])
    return rows, {"rows": to_json(rows).decode(), "new_seq": head[0], "new_hash": head[1],
                  "old_seq": guess[0], "old_hash": guess[1]}


def _head_move(row: dict[str, Any], guess: tuple[int, str]) -> dict[str, Any]:
    return {"new_seq": row["seq"], "new_hash": row["hash"], "old_seq": guess[0],
            "old_hash": guess[1]}


def _insert(db: Session | DriverConnection, connection: DriverConnection, log: AuditLog,
            event: SecurityEvent, row: dict[str, Any]) -> int:
    """Insert the row of an event whose place is now fixed (the head is held until the
    transaction ends), and tell the subscribers once the transaction ends."""
    _INSERT_EVENT.execute(connection, row)
    place = log.subscribers.take_place()
    if place is not None:
        committed = log.committed(row, event)
        # (Store.transaction and Store.write run these hooks: a place is always settled)
        after_commit(db, lambda: log.subscribers.settle(place, committed))
        after_rollback(db, lambda: log.subscribers.settle(place, None))
    return remember(connection.engine, row)


def remember(engine: Engine, row: dict[str, Any]) -> int:
    """The head this process last wrote (a guess for its next write); its sequence number."""
    seq: int = row["seq"]
    _last_heads[engine] = (seq, row["hash"])
    return seq


def forget(engine: Engine) -> None:
    """The guess was wrong (another writer moved the head): read the head next time."""
    _last_heads.pop(engine, None)


def last_head(engine: Engine) -> tuple[int, str] | None:
    return _last_heads.get(engine)


# Standalone appends of this process take turns on PostgreSQL, so each one's guess of the head
# is the one before it (held for one round trip); on SQLite the writer lock does that.
_standalone = threading.Lock()


def write_standalone(store: Store, log: AuditLog, event: SecurityEvent) -> int:
    """One event committed on its own, blocking: on PostgreSQL one statement (compare-and-swap
    of the head and insert) on an autocommit connection; if another writer moved the head, or
    on SQLite, a short transaction of its own."""
    if store.dialect == "postgresql":
        with _standalone, store.read() as connection:
            guess = _last_heads.get(connection.engine)
            if guess is not None:
                rows, params = chained_from_guess([event.fields()],
                                                  _log_key(connection, log, False), guess,
                                                  log.occurred_at())
                places = [log.subscribers.take_place()]
                written = 0
                try:
                    written = APPEND_IF_UNMOVED.execute(connection, params)
                finally:
                    settle_guessed(log, connection.engine, places, rows, [event], written == 1)
                if written:
                    seq: int = rows[0]["seq"]
                    return seq
    with store.write() as connection:
        return record(connection, log, event)


def settle_guessed(log: AuditLog, engine: Engine, places: list[int | None],
                   rows: list[dict[str, Any]], events: list[SecurityEvent],
                   written: bool) -> None:
    """The end of a write from a guessed head (``APPEND_IF_UNMOVED``, one event or a batch),
    also when it raised: each place settled with its event if it was written, else with
    nothing; the head it wrote remembered, or, when the guess was stale or the outcome is
    unknown, forgotten (the next write reads the head)."""
    for place, row, event in zip(places, rows, events, strict=False):
        log.subscribers.settle(place, log.committed(row, event) if written else None)
    if written:
        remember(engine, rows[-1])
    else:
        forget(engine)
