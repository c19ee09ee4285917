"""Batching: standalone events of a server's event loop written together.

``append`` writes an event on its own, committed before it returns: for an operation that
changes nothing else (a read, a reveal). In a server's event loop the events of requests
appending at the same moment go in together, one commit for all: on PostgreSQL one statement
(``APPEND_IF_UNMOVED``), on SQLite one transaction on a worker thread. Everywhere else it is
``writing.write_standalone``.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from sqlalchemy import Engine

from sellervault.audit.events import SecurityEvent
from sellervault.audit.log import AuditLog
from sellervault.audit.writing import (
    APPEND_IF_UNMOVED,
    LOG_KEY,
    chained_from_guess,
    last_head,
    record,
    settle_guessed,
    write_standalone,
)
from sellervault.store.engine import Store

log = logging.getLogger("sellervault.audit")

BATCH_LIMIT = 64  # events per statement; more wait for the next turn


class _Batches:
    """The appends of one event loop to one database, taking turns (an asyncio lock): a
    caller's turn writes every event waiting by then, its own and those of callers still
    queued for the lock, who then find theirs done. Under load a turn is one round trip and
    one commit for several events, where a turn per event made every request queue for the
    one before."""

    def __init__(self, store: Store, audit_log: AuditLog) -> None:
        self.store = store
        self.log = audit_log
        self.turn = asyncio.Lock()
        self.waiting: list[tuple[SecurityEvent, asyncio.Future[int | None]]] = []

    async def append(self, log_key: bytes | None, event: SecurityEvent) -> int | None:
        """The event's sequence number, or None when it must take the blocking path."""
        done: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self.waiting.append((event, done))
        async with self.turn:
            while not done.done():  # (more than BATCH_LIMIT were waiting before this one)
                batch = self.waiting[:BATCH_LIMIT]
                del self.waiting[:BATCH_LIMIT]
                if log_key is None:
                    await self._write_in_a_transaction(batch)
                else:
                    await self._write(log_key, batch)
        return done.result()

    async def _write_in_a_transaction(
            self, batch: list[tuple[SecurityEvent, asyncio.Future[int | None]]]) -> None:
        """SQLite: ``batch`` in one transaction on one worker thread (one trip to the thread
        and one commit for all, where each event took its own). A failed batch leaves each
        to its own append, as below."""
        seqs: list[int] = []
        try:
            seqs = await self.store.offload(_record_all, self.store, self.log,
                                            [event for event, _ in batch])
        except Exception as exc:
            log.warning("a batch of %d security events was not written (%s): each is "
                        "retried on its own", len(batch), type(exc).__name__)
        finally:  # (a rolled-back transaction wrote none: nothing to settle but the callers)
            for index, (_, done) in enumerate(batch):
                done.set_result(seqs[index] if seqs else None)

    async def _write(self, log_key: bytes,
                     batch: list[tuple[SecurityEvent, asyncio.Future[int | None]]]) -> None:
        """PostgreSQL: chain and write ``batch`` in one statement; settle each caller's
        future with its sequence number, or with None: then each appends on its own through
        the blocking path, which reads the head (the guess was wrong) and raises its own
        error (the batch failed: so one event the database refuses does not fail the others,
        and a database that is down fails them all)."""
        engine, subscribers = self.store.engine, self.log.subscribers
        guess = last_head(engine)
        written = 0
        rows: list[dict[str, Any]] = []
        places: list[int | None] = []
        try:
            if guess is not None:
                rows, params = chained_from_guess([event.fields() for event, _ in batch],
                                                  log_key, guess, self.log.occurred_at())
                places = [subscribers.take_place() for _ in batch]
                async with self.store.connect() as connection:
                    written = await connection.execute(APPEND_IF_UNMOVED, params)
        except Exception as exc:
            log.warning("a batch of %d security events was not written (%s): each is "
                        "retried on its own", len(batch), type(exc).__name__)
        finally:  # (also when this turn is cancelled: the others retry on their own)
            ok = written == len(batch)
            settle_guessed(self.log, engine, places, rows, [event for event, _ in batch], ok)
            for index, (_, done) in enumerate(batch):
                done.set_result(rows[index]["seq"] if ok else None)


_batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Engine, _Batches]] = (
    weakref.WeakKeyDictionary())


def _record_all(store: Store, audit_log: AuditLog, events: list[SecurityEvent]) -> list[int]:
    with store.write() as connection:
        return [record(connection, audit_log, event) for event in events]


async def append(store: Store, audit_log: AuditLog, event: SecurityEvent) -> int:
    """Append ``event`` on its own, committed when this returns; its sequence number.

    In a server's event loop (``Store.in_event_loop``), events waiting at once are written
    together (see ``_Batches``): on PostgreSQL in one statement, once the process knows the
    head and holds the log key; on SQLite in one transaction on a worker thread. Elsewhere,
    and for PostgreSQL's first event of the process, a head moved by another writer or a log
    key not unwrapped yet, ``write_standalone``, on a worker thread if called from the
    loop."""
    postgres = store.dialect == "postgresql"
    log_key = audit_log.keyring.cached_system_key(LOG_KEY) if postgres else None
    if store.in_event_loop and (not postgres or (log_key is not None
                                                 and last_head(store.engine) is not None)):
        of_loop = _batches.setdefault(asyncio.get_running_loop(), {})
        batches = of_loop.get(store.engine) or of_loop.setdefault(
            store.engine, _Batches(store, audit_log))
        seq = await batches.append(log_key, event)
        if seq is not None:
            return seq
    return await store.offload(write_standalone, store, audit_log, event)
