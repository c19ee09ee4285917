"""The storage engine: SQLite hardened (WAL, secure_delete, owner-only files), PostgreSQL over
TLS off loopback, and a schema that migrations bring exactly to the models."""

from __future__ import annotations

import asyncio
import stat
import threading
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, func, insert, select, text
from sqlalchemy.exc import OperationalError

from sellervault.runtime import Runtime
from sellervault.store import engine, migrate
from sellervault.store.driver import Db
from sellervault.store.engine import Store, after_commit, make_engine
from sellervault.store.prepared import Prepared
from sellervault.store.schema import metadata
from tests.conftest import fresh_database
from tests.support import in_event_loop


def test_sqlite_runs_in_wal_with_secure_delete(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA secure_delete")).scalar() == 1
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 10_000
    engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_files_are_owner_only(runtime: Runtime) -> None:
    assert runtime.store.dialect == "sqlite"
    with runtime.store.transaction() as session:
        session.execute(text("SELECT 1"))
    database = Path(runtime.store.engine.url.database or "")
    for path in database.parent.glob(database.name + "*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_migrations_build_exactly_the_models(runtime: Runtime) -> None:
    assert migrate.is_current(runtime.store.engine)
    with runtime.store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_migrating_twice_is_harmless(runtime: Runtime) -> None:
    migrate.upgrade(runtime.store.engine)
    assert migrate.is_current(runtime.store.engine)


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://vault@db.internal:5432/sellervault",
    "postgresql+psycopg://vault@10.0.0.5/sellervault?sslmode=disable",
    "postgresql+psycopg://vault@db.internal/sellervault?sslmode=prefer",
])
def test_remote_postgres_without_tls_is_refused_before_connecting(url: str) -> None:
    with pytest.raises(ValueError, match="without TLS"):
        make_engine(url)


@pytest.mark.parametrize(("variable", "value", "match"), [
    ("PGHOST", "192.0.2.2", "without TLS"),
    ("PGHOSTADDR", "192.0.2.2", "without TLS"),
    ("PGSERVICE", "sellervault", "PGSERVICE"),
])
def test_postgres_completed_by_libpq_environment_is_refused_before_connecting(
        monkeypatch: pytest.MonkeyPatch, variable: str, value: str, match: str) -> None:
    """The engine checks the URL with the environment its connections are made in: libpq
    would take the host from PGHOST, connect to PGHOSTADDR, or read a service file."""
    for name in ("PGHOST", "PGHOSTADDR", "PGSSLMODE", "PGSERVICE", "PGSERVICEFILE"):
        monkeypatch.delenv(name, raising=False)
    make_engine("postgresql://vault@localhost/sellervault").dispose()
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=match):
        make_engine("postgresql://vault@/sellervault")
    with pytest.raises(ValueError, match=match):
        Store.from_url("postgresql+psycopg://vault@/sellervault")


def test_a_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 'x.db'}")
    with store.transaction() as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
    with pytest.raises(RuntimeError), store.transaction() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        raise RuntimeError("boom")
    with store.transaction() as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 0
    store.dispose()


def test_after_commit_callbacks_run_only_when_the_transaction_commits(
        runtime: Runtime) -> None:
    calls: list[str] = []
    with runtime.store.transaction() as session:
        after_commit(session, lambda: calls.append("committed"))
        assert calls == []
    assert calls == ["committed"]
    with pytest.raises(RuntimeError), runtime.store.transaction() as session:
        after_commit(session, lambda: calls.append("rolled back"))
        raise RuntimeError("boom")
    assert calls == ["committed"]


T = Table("t", MetaData(), Column("x", Integer))
_ADD = Prepared(insert(T).values(x=bindparam("x")))
_ALL = Prepared(select(T.c.x).order_by(T.c.x))


def _values(db: Db) -> list[int]:
    return [row.x for row in _ALL.all(db, {})]


def _create_t(runtime: Runtime) -> None:
    with runtime.store.transaction() as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))


def test_a_driver_write_commits_rolls_back_and_runs_its_hooks_like_a_transaction(
        runtime: Runtime) -> None:
    _create_t(runtime)
    calls: list[str] = []
    with runtime.store.write() as db:
        _ADD.execute(db, {"x": 1})
        after_commit(db, lambda: calls.append("committed"))
        assert calls == []
    with pytest.raises(RuntimeError), runtime.store.write() as db:
        _ADD.execute(db, {"x": 2})
        after_commit(db, lambda: calls.append("rolled back"))
        raise RuntimeError("boom")
    with runtime.store.write() as db:  # the pooled connection keeps no stale hooks
        assert _values(db) == [1]
    assert calls == ["committed"]


def test_a_read_never_waits_for_a_writer(runtime: Runtime) -> None:
    """A lookup through ``Store.read`` runs beside an open write transaction and sees only
    what is committed."""
    _create_t(runtime)
    with runtime.store.transaction() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        with runtime.store.read() as db:  # same thread: would deadlock if it waited
            assert _values(db) == []
    with runtime.store.read() as db:
        assert _values(db) == [1]


def test_each_statement_of_a_read_commits_and_the_connection_goes_back_transactional(
        runtime: Runtime) -> None:
    _create_t(runtime)
    with runtime.store.read() as db:
        _ADD.execute(db, {"x": 1})  # a one-statement write: committed at once
        with runtime.store.read() as other:
            assert _values(other) == [1]
    for _ in range(3):  # whichever pooled connection comes next is in a transaction again
        with pytest.raises(RuntimeError), runtime.store.write() as db:
            _ADD.execute(db, {"x": 2})
            raise RuntimeError("boom")
        with pytest.raises(RuntimeError), runtime.store.transaction() as session:
            session.execute(text("INSERT INTO t VALUES (3)"))
            raise RuntimeError("boom")
    with runtime.store.read() as db:
        assert _values(db) == [1]


def test_writers_of_one_process_take_turns(runtime: Runtime) -> None:
    with runtime.store.transaction() as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))

    def write(value: int) -> None:
        with runtime.store.transaction() as session:
            count = session.execute(text("SELECT count(*) FROM t")).scalar_one()
            session.execute(text("INSERT INTO t VALUES (:x)"), {"x": count})

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(write, range(60)))
    with runtime.store.read() as db:
        values = _values(db)
    if runtime.store.dialect == "sqlite":  # one writer at a time: each saw the one before
        assert values == list(range(60))
    else:
        assert len(values) == 60


def test_a_writer_waiting_too_long_fails_like_a_locked_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "WRITER_TIMEOUT_SECONDS", 0.2)
    store = Store.from_url(f"sqlite:///{tmp_path / 'x.db'}")
    entered = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with store.transaction() as session:
            session.execute(text("CREATE TABLE t (x INTEGER)"))
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert entered.wait(10)
        with pytest.raises(OperationalError, match="database is locked"), \
                store.transaction() as session:
            session.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        release.set()
        holder.join()
        store.dispose()


def test_event_loop_connections_exist_only_while_open(runtime: Runtime) -> None:
    """A server's start-up opens them (psycopg's asynchronous connections on PostgreSQL,
    one connection of the loop's own on SQLite)."""
    store = runtime.store

    async def inside() -> None:
        assert store.in_event_loop
        async with store.connect() as db:
            if store.dialect == "postgresql":
                assert db.driver.autocommit  # each statement commits by itself

    assert not store.in_event_loop
    in_event_loop(runtime, inside)
    assert not store.in_event_loop


# -- pooled PostgreSQL connections whose server side has gone --------------------------------

_PID = Prepared(select(func.pg_backend_pid().label("pid")))


@pytest.fixture
def postgres_store(tmp_path: Path) -> Iterator[Store]:
    """A store on a fresh PostgreSQL database holding table ``t``, one connection pooled."""
    with fresh_database("postgresql", tmp_path) as url:
        store = Store.from_url(url)
        try:
            with store.transaction() as session:
                session.execute(text("CREATE TABLE t (x INTEGER)"))
            yield store
        finally:
            store.dispose()


def _admin(store: Store) -> psycopg.Connection[Any]:
    """A connection of the test's own to the store's database (the pool never sees it)."""
    url = store.engine.url.set(drivername="postgresql")
    return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)


def _terminate(store: Store, pids: Collection[int]) -> None:
    """End these backends as an administrator would, waiting until each has exited, so its
    FATAL message and the end of its connection are on their way to the pooled client."""
    with _admin(store) as admin:
        for pid in pids:
            ended = admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone()
            assert ended == (True,)


def _use(store: Store, how: str) -> int:
    """One unit of work through ``store.<how>()``; the backend it ran on. A write or a
    transaction adds a row to ``t``."""
    if how == "read":
        with store.read() as db:
            pid: int = _PID.first(db, {}).pid
    elif how == "write":
        with store.write() as db:
            _ADD.execute(db, {"x": 1})
            pid = _PID.first(db, {}).pid
    else:
        with store.transaction() as session:
            session.execute(text("INSERT INTO t VALUES (1)"))
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return pid


async def _use_async(store: Store) -> int:
    async with store.connect() as db:
        rows = await db.all(_PID, {})
    pid: int = rows[0].pid
    return pid


def _rows_in_t(store: Store) -> int:
    with store.read() as db:
        return len(_values(db))


@pytest.mark.parametrize("how", ["read", "write", "transaction"])
def test_a_pooled_connection_whose_backend_was_terminated_is_replaced_before_use(
        postgres_store: Store, how: str) -> None:
    """Its server side gone, the pooled connection is found dead at checkout, before any
    statement, and the work runs on a new one at the first try."""
    store = postgres_store
    pid = _use(store, how)
    assert _use(store, how) == pid  # the one pooled connection, used again
    _terminate(store, [pid])
    replaced = _use(store, how)
    assert replaced != pid
    assert _use(store, how) == replaced  # and the new one is pooled in its place
    assert _rows_in_t(store) == (0 if how == "read" else 4)


def test_an_event_loop_connection_whose_backend_was_terminated_is_replaced_before_use(
        postgres_store: Store) -> None:
    store = postgres_store

    async def work() -> None:
        await store.open_async(1)
        try:
            pid = await _use_async(store)
            assert await _use_async(store) == pid
            _terminate(store, [pid])
            replaced = await _use_async(store)
            assert replaced != pid
            assert await _use_async(store) == replaced
        finally:
            await store.close_async()

    anyio.run(work)


def test_every_pooled_connection_terminated_at_once_is_replaced_before_use(
        postgres_store: Store) -> None:
    """As after a server restart: each checkout meets a dead connection first."""
    store = postgres_store
    with store.read() as a, store.read() as b, store.read() as c:
        dead = {_PID.first(db, {}).pid for db in (a, b, c)}
    assert len(dead) == 3
    _terminate(store, dead)
    used = {_use(store, how) for how in ("read", "write", "transaction", "read", "write")}
    assert not used & dead
    assert _rows_in_t(store) == 3


def test_every_event_loop_connection_terminated_at_once_is_replaced_before_use(
        postgres_store: Store) -> None:
    store = postgres_store

    async def work() -> None:
        await store.open_async(3)
        try:
            async with store.connect() as a, store.connect() as b, \
                    store.connect() as c:
                dead = {(await db.all(_PID, {}))[0].pid for db in (a, b, c)}
            assert len(dead) == 3
            _terminate(store, dead)
            used = await asyncio.gather(*(_use_async(store) for _ in range(3)))
            used += [await _use_async(store) for _ in range(3)]
            assert not set(used) & dead
        finally:
            await store.close_async()

    anyio.run(work)


def test_checking_a_pooled_connection_sends_nothing_to_the_server(postgres_store: Store) -> None:
    """Finding dead connections costs no round trip (no pre-ping): between two uses of a
    healthy connection, through each way of taking one, its backend saw nothing (its last
    statement and when its state last changed are as they were) and it is handed out again."""
    store = postgres_store

    def backend(pid: int) -> tuple[Any, ...]:
        with _admin(store) as admin:
            found = admin.execute("SELECT query, state, state_change FROM pg_stat_activity"
                                  " WHERE pid = %s", [pid]).fetchone()
        assert found is not None
        return tuple(found)

    pid = _use(store, "read")
    before = backend(pid)
    assert "pg_backend_pid" in before[0] and before[1] == "idle"
    for _ in range(3):
        with store.read():
            pass
        with store.write():
            pass
    assert backend(pid) == before
    assert _use(store, "read") == pid

    async def work() -> None:
        await store.open_async(1)
        try:
            pid = await _use_async(store)
            before = backend(pid)
            assert "pg_backend_pid" in before[0] and before[1] == "idle"
            for _ in range(3):
                async with store.connect():
                    pass
            assert backend(pid) == before
            assert await _use_async(store) == pid
        finally:
            await store.close_async()

    anyio.run(work)
