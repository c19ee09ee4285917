"""The storage engine: SQLite hardened (WAL, secure_delete, owner-only files), PostgreSQL over
TLS off loopback, and a schema that migrations bring exactly to the models."""

from __future__ import annotations

import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, insert, select, text
from sqlalchemy.exc import OperationalError

from sellervault.runtime import Runtime
from sellervault.store import engine, migrate
from sellervault.store.driver import Db
from sellervault.store.engine import Store, after_commit, make_engine
from sellervault.store.prepared import Prepared
from sellervault.store.schema import metadata
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


def test_event_loop_connections_exist_on_postgresql_only_while_open(runtime: Runtime) -> None:
    """A server's start-up opens them (PostgreSQL); SQLite has no asynchronous driver."""
    store = runtime.store
    postgres = store.dialect == "postgresql"

    async def inside() -> None:
        assert store.has_async is postgres
        if not postgres:
            with pytest.raises(RuntimeError, match="open_async"):
                async with store.read_async():
                    pass
            return
        async with store.read_async() as db:
            assert db.driver.autocommit  # each statement commits by itself

    assert not store.has_async
    in_event_loop(runtime, inside)
    assert not store.has_async
