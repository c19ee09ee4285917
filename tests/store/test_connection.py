"""One awaitable interface over both databases (``store.connection``, ``Store.run/call``).

- An operation is written once, as a coroutine. Driven from blocking code (``Store.call``)
  it runs to its end on the calling thread, its statements on the blocking driver, its
  blocking steps (``Store.offload``) in place; nothing waits for an event loop, even when
  the calling thread has one running.
- Awaited from the event loop (``Store.run``) with the loop's connections open (a started
  server): right there in the loop, its blocking steps on a worker thread; its statements
  awaited on psycopg's asynchronous connections (PostgreSQL), or its reads on the loop's own
  connection and its writes on a worker thread (SQLite, which has no asynchronous driver).
  Without them, the whole operation is driven on one worker thread.
- Both connections return the same rows, conversions, row counts and errors (which never
  show parameters); an operation that would suspend without a loop is refused, never left
  half-run; a blocking connection is never handed out inside the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from sellervault.store.connection import (
    Connection,
    InlineConnection,
    LoopConnection,
    SQLiteLoopConnection,
    SuspendedOutsideLoopError,
    drive,
)
from sellervault.store.engine import Store
from sellervault.store.prepared import Prepared
from tests.conftest import engine_with_tables

metadata = MetaData()
THINGS = Table("things", metadata,
               Column("id", Integer, primary_key=True),
               Column("name", String(32), nullable=False))
ALL = Prepared(select(THINGS.c.id, THINGS.c.name).order_by(THINGS.c.id))
RENAME = Prepared(update(THINGS).where(THINGS.c.id == 2).values(name=bindparam("new")))
ADD = Prepared(insert(THINGS).values(id=bindparam("id"), name=bindparam("name")))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with engine_with_tables(request.param, tmp_path, metadata) as engine:
        with engine.begin() as connection:
            connection.execute(insert(THINGS), [{"id": 1, "name": "one"},
                                                {"id": 2, "name": "two"}])
        yield Store(engine)


async def _statements(db: Connection) -> tuple[list[Any], int, str]:
    """What an operation sees: rows, a one-statement write (autocommit), an error."""
    rows = await db.all(ALL, {})
    changed = await db.execute(RENAME, {"new": "renamed"})
    try:
        await db.execute(ADD, {"id": 1, "name": "secret-value-4242"})
    except IntegrityError as exc:
        return rows, changed, str(exc)
    raise AssertionError("a duplicate key was accepted")


async def _operation(store: Store) -> tuple[str, tuple[list[Any], int, str], str]:
    """A request-path operation: statements, then a blocking step (``offload``)."""
    async with store.connect() as db:
        kind = type(db).__name__
        seen = await _statements(db)
    where = await store.offload(lambda: threading.current_thread().name)
    return kind, seen, where


def _in_loop(store: Store, work: Any, *, connections: bool = True) -> Any:
    async def run() -> Any:
        if connections:
            await store.open_async(2)
        try:
            return await work()
        finally:
            await store.close_async()

    return anyio.run(run)


def _committed(store: Store) -> list[tuple[int, str]]:
    with store.engine.connect() as connection:
        return [(row.id, row.name) for row in ALL.all(connection, {})]


def test_called_from_blocking_code_it_runs_on_this_thread(store: Store) -> None:
    kind, (rows, changed, error), where = store.call(_operation, store)
    assert kind == InlineConnection.__name__
    assert [tuple(row) for row in rows] == [(1, "one"), (2, "two")]
    assert changed == 1 and "secret-value-4242" not in error
    assert where == threading.current_thread().name
    assert _committed(store) == [(1, "one"), (2, "renamed")]  # autocommit: kept


def test_run_from_the_event_loop_awaits_it_in_the_loop(store: Store) -> None:
    loop_thread: list[str] = []

    async def work() -> Any:
        loop_thread.append(threading.current_thread().name)
        return await store.run(_operation, store)

    kind, (rows, changed, error), where = _in_loop(store, work)
    assert [tuple(row) for row in rows] == [(1, "one"), (2, "two")]
    assert changed == 1 and "secret-value-4242" not in error
    assert _committed(store) == [(1, "one"), (2, "renamed")]
    assert kind == (LoopConnection if store.dialect == "postgresql"
                    else SQLiteLoopConnection).__name__
    assert where != loop_thread[0]  # the blocking step went to a worker thread


def test_on_sqlite_the_loop_reads_in_place_and_writes_on_a_worker_thread(
        store: Store) -> None:
    """A write may wait for SQLite's lock (up to its busy timeout): never in the loop."""
    if store.dialect != "sqlite":
        pytest.skip("PostgreSQL's statements are awaited, not run on a thread")
    writers: list[str] = []
    original = store.execute_one

    def execute_one(statement: Prepared, params: Any) -> int:
        writers.append(threading.current_thread().name)
        return original(statement, params)

    store.execute_one = execute_one  # type: ignore[method-assign]  # (observed, not replaced)

    async def work() -> tuple[str, list[Any]]:
        async with store.connect() as db:
            rows = await db.all(ALL, {})
            await db.execute(RENAME, {"new": "renamed"})
        return threading.current_thread().name, rows

    loop_thread, rows = _in_loop(store, work)
    assert len(rows) == 2 and writers and writers[0] != loop_thread
    assert _committed(store) == [(1, "one"), (2, "renamed")]


def test_without_loop_connections_run_drives_it_on_one_worker_thread(store: Store) -> None:
    async def work() -> tuple[str, Any]:
        return threading.current_thread().name, await store.run(_operation, store)

    loop_thread, (kind, _, where) = _in_loop(store, work, connections=False)
    assert kind == InlineConnection.__name__
    assert where != loop_thread


def test_called_inside_a_running_loop_it_still_runs_in_place(store: Store) -> None:
    """``call`` means "block until done", also from a thread with a running loop (a test, a
    synchronous helper): it never hands work to the loop it is blocking."""

    async def work() -> Any:
        return store.call(_operation, store)

    kind, _, where = _in_loop(store, work)
    assert kind == InlineConnection.__name__
    assert where == threading.current_thread().name


def test_no_blocking_connection_is_handed_out_inside_the_event_loop(store: Store) -> None:
    async def work() -> None:
        async with store.connect():
            raise AssertionError("a connection was handed out")

    with pytest.raises(RuntimeError, match=r"Store\.run"):
        _in_loop(store, work, connections=False)


def test_an_operation_that_would_wait_for_a_loop_is_refused_and_closed() -> None:
    finished = []

    async def suspends() -> None:
        try:
            await asyncio.sleep(0)
        finally:
            finished.append("cleaned up")

    with pytest.raises(SuspendedOutsideLoopError):
        drive(suspends())
    assert finished == ["cleaned up"]  # closed: its finally blocks ran, nothing left pending


def test_an_operation_error_reaches_the_caller_unchanged(store: Store) -> None:
    class Refused(Exception):
        pass

    async def fails() -> None:
        async with store.connect() as db:
            await db.all(ALL, {})
            raise Refused()

    with pytest.raises(Refused):
        store.call(fails)
    with pytest.raises(Refused):
        _in_loop(store, lambda: store.run(fails))
