"""Database engine and transactions.

SQLite (the embedded default) runs in WAL mode with ``secure_delete`` so deleted rows are
overwritten rather than left in free pages, and every transaction begins IMMEDIATE so the
security-log chain head is never read by two writers at once. Transactions of one process
queue on a lock before SQLite's: SQLite lets one writer in at a time anyway, and its busy
handler waits by sleeping (1 ms, 2 ms, 5 ms...), so threads colliding on the database lock
would leave the CPU idle. (A one-statement write of the event loop's, ``execute_one``, such
as a session's last-seen time, takes SQLite's lock directly, on a worker thread.)
PostgreSQL is reached through psycopg 3; a TCP connection to a non-loopback host must use
TLS, judged on where libpq will really connect, its environment (``PGHOST``...) included
(checked in config, and again here, before any connection).

``Store.write`` and ``Store.read`` give the driver's own connection (``store.driver``) for
``Prepared`` statements, in a transaction, or in autocommit for work that is one statement
(no write lock, no BEGIN and no COMMIT). The request path's operations are written once, as
coroutines, against ``Store.connect`` (``store.connection``), and run with ``Store.run``
from the event loop or ``Store.call`` from blocking code.

A pooled PostgreSQL connection whose server side has gone (its backend terminated, the server
restarted) is found at checkout, before any statement, and replaced: see ``server_gone``.
"""

from __future__ import annotations

import asyncio
import functools
import select
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from contextlib import (
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
    nullcontext,
)
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Connection as CoreConnection
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from sellervault.config import check_database_url
from sellervault.store.connection import (
    Connection,
    InlineConnection,
    LoopConnection,
    SQLiteLoopConnection,
    drive,
)
from sellervault.store.driver import DriverConnection, translate_error
from sellervault.store.prepared import Prepared

AFTER_COMMIT = "sellervault_after_commit"
AFTER_ROLLBACK = "sellervault_after_rollback"
SNAPSHOT_OPTION = "sellervault_snapshot"  # (a Connection execution option: Store.snapshot)
WRITER_TIMEOUT_SECONDS = 30.0  # as SQLite's busy_timeout
WAL_CHECKPOINT_PAGES = 10_000
P = ParamSpec("P")
T = TypeVar("T")


_DRIVEN: ContextVar[bool] = ContextVar("sellervault_driven", default=False)
"""Set while ``Store.call`` drives an operation: it runs without the event loop."""


# asyncio's own low-level accessor (what ``get_running_loop`` calls): the loop running in this
# thread, or None, without raising. Asked several times per request.
_running_loop: Callable[[], asyncio.AbstractEventLoop | None] = asyncio.events._get_running_loop


def _normalize(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = _normalize(url)
    check_database_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_size=8)
        _configure_sqlite(engine)
        return engine
    # No pre-ping: it would add a round trip to every checkout. A connection whose server side
    # has gone is found without one (``server_gone``); old ones are recycled.
    engine = create_engine(url, pool_size=10, max_overflow=10, pool_recycle=1800)
    _configure_postgresql(engine)
    return engine


def make_lock_engine(url: str) -> Engine:
    """An engine for one PostgreSQL connection held for a process's life, to carry a
    session-level lock (``store.maintenance``): no pool (a connection closed is closed, and
    its session's locks with it), TCP keepalives (a dead peer is found in seconds, not the
    kernel's hours), a statement timeout (a check never hangs), and a name of its own in
    ``pg_stat_activity``."""
    url = _normalize(url)
    check_database_url(url)
    return create_engine(url, poolclass=NullPool, connect_args={
        "application_name": "sellervault-claim", "keepalives": 1, "keepalives_idle": 5,
        "keepalives_interval": 2, "keepalives_count": 3, "connect_timeout": 10,
        "options": "-c statement_timeout=5000"})


def server_gone(connection: Any) -> bool:
    """Whether an idle psycopg connection has lost its server, found without a round trip.

    Between uses a connection has read everything it asked for, so its socket has nothing to
    read unless the server sent something unasked: PostgreSQL sends a terminated backend's
    FATAL ("terminating connection due to administrator command", a restart's "... due to
    shutdown command") and then closes the connection. A readable socket (data, end of file,
    an error) therefore means a connection not to use. The rare unsolicited message on a
    healthy connection (a NOTIFY, which SellerVault never LISTENs for; a reloaded setting's
    ParameterStatus) only costs it being replaced. One non-blocking poll, ~1.5 us; a
    ``SELECT 1`` (pre-ping) costs a round trip, ~90 us on loopback.

    Not found this way, so the first statement fails (once per connection, which is then
    discarded): a server that disappears without closing its end (a host down, a network
    partition), and a backend terminated in the microseconds between this poll and the first
    statement. The store does not retry that statement: ``read``, ``write`` and
    ``connect`` hand a connection to the caller's block, which the store cannot run again,
    and a ``read`` also runs one-statement writes in autocommit, whose outcome is unknown once
    the connection is lost.
    """
    if connection.closed:
        return True
    poller = select.poll()
    poller.register(connection.pgconn.socket, select.POLLIN)  # (hang-ups and errors too)
    return bool(poller.poll(0))


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # The pool closes this connection and hands out a new one in its place (making it
        # here, and checking it again), within the same checkout.
        if server_gone(dbapi_connection):
            raise DisconnectionError("the server closed this pooled connection")


def _configure_sqlite(engine: Engine) -> None:
    database = engine.url.database

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Copy the WAL into the database every ~40 MB instead of SQLite's ~4 MB: an ingest
        # batch of 500 orders dirties ~1,500 pages (three blind indexes take each insert at a
        # random place), so the default copied every batch's pages back at once; with the
        # larger window a page rewritten by several batches is copied once.
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        cursor.close()
        _owner_only(database)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        deferred = connection.get_execution_options().get(SNAPSHOT_OPTION, False)
        connection.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


def _owner_only(database: str | None) -> None:
    """The database file and its WAL hold ciphertexts and the security log: owner-only,
    whatever the umask (SQLite gives the -wal and -shm files the database file's mode)."""
    if not database or database == ":memory:":
        return
    for suffix in ("", "-wal", "-shm"):
        path = Path(database + suffix)
        if path.exists() and path.stat().st_mode & 0o077:
            path.chmod(0o600)


def after_commit(db: Session | DriverConnection, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the transaction of ``db`` (a ``Store.transaction`` session or a
    ``Store.write`` connection; a ``Store.read`` connection commits each statement, so its
    callbacks run when it is handed back) commits; never if it rolls back."""
    db.info.setdefault(AFTER_COMMIT, []).append(callback)


def after_rollback(db: Session | DriverConnection, callback: Callable[[], None]) -> None:
    """Run ``callback`` if the transaction of ``db`` rolls back (or its commit fails)."""
    db.info.setdefault(AFTER_ROLLBACK, []).append(callback)


def _run_callbacks(info: dict[str, Any], which: str) -> None:
    """Every callback runs, whatever an earlier one raised (each may settle something another
    waits for); the first error is raised once all have run."""
    failed: BaseException | None = None
    for callback in info.get(which, ()):
        try:
            callback()
        except BaseException as exc:
            failed = failed or exc
    if failed is not None:
        raise failed


class _WriterLock:
    """The process-wide queue for SQLite writers; a wait as long as SQLite's busy timeout
    fails the same way SQLite would ("database is locked"), never hangs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        if not self._lock.acquire(timeout=WRITER_TIMEOUT_SECONDS):
            raise OperationalError("BEGIN IMMEDIATE", None, Exception("database is locked"))

    def __exit__(self, *_exc: object) -> None:
        self._lock.release()


class Store:
    """The engine and a session factory; services open their own transactions through it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._sqlite = engine.dialect.name == "sqlite"
        self._writer: AbstractContextManager[None] = (_WriterLock() if self._sqlite
                                                      else nullcontext())
        self._async_pool: AsyncConnectionPool[Any] | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._loop_sqlite: Any = None  # (SQLite: the loop's own connection, a pooled one)

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(make_engine(url))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def default_worker_threads(self) -> int:
        """How many threads should run requests' blocking database work. SQLite: one. Its
        writers take turns anyway and every request writes (its security event), so more
        threads would only queue for the writer lock and hand the interpreter lock back and
        forth (a reveal cost ~20% more server CPU with four). PostgreSQL: four, so that slow
        statements do not wait for each other (the hot path awaits its statements in the
        event loop instead, see ``run``); fewer than the pool's 20 connections."""
        return 1 if self._sqlite else 4

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back on any exception."""
        session: Session | None = None
        try:
            with self._writer, self._sessions.begin() as session:
                yield session
        except BaseException:
            if session is not None:
                _run_callbacks(session.info, AFTER_ROLLBACK)
            raise
        _run_callbacks(session.info, AFTER_COMMIT)

    @contextmanager
    def snapshot(self) -> Iterator[CoreConnection]:
        """A read-only view of the database at one moment, for a long read that must be
        consistent (verifying the security log) without holding up writers: PostgreSQL
        REPEATABLE READ, READ ONLY; SQLite a deferred read transaction, which in WAL mode sees
        the database as of its first statement and never takes the write lock."""
        with self.engine.connect() as connection:
            if self._sqlite:
                connection = connection.execution_options(**{SNAPSHOT_OPTION: True})
            else:
                connection = connection.execution_options(isolation_level="REPEATABLE READ",
                                                          postgresql_readonly=True)
            with connection.begin():
                yield connection

    @contextmanager
    def write(self) -> Iterator[DriverConnection]:
        """``transaction()`` on the driver's connection, for a hot path that runs only
        ``Prepared`` statements (an ORM session costs ~55 us more per transaction, a Core
        connection ~40 us). Committed when the block ends, rolled back on any exception."""
        with self._writer:
            pooled = self.engine.raw_connection()
            try:
                db = DriverConnection(self.engine, pooled.driver_connection, {})
                if self._sqlite:  # (psycopg sends BEGIN by itself before the first statement)
                    self._driver_call(db, "BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    try:
                        db.driver.rollback()
                    except Exception:
                        pooled.invalidate()  # unusable: never back into the pool
                    _run_callbacks(db.info, AFTER_ROLLBACK)
                    raise
                try:
                    self._driver_call(db, "COMMIT")
                except BaseException:
                    _run_callbacks(db.info, AFTER_ROLLBACK)
                    raise
            finally:
                pooled.close()
        _run_callbacks(db.info, AFTER_COMMIT)

    @contextmanager
    def read(self) -> Iterator[DriverConnection]:
        """A driver connection whose every statement runs on its own (autocommit): for a
        lookup that is one statement, or a write that is one statement. It costs no BEGIN or
        COMMIT and never waits for a writer's lock; each statement is atomic by itself."""
        pooled = self.engine.raw_connection()
        try:
            driver: Any = pooled.driver_connection
            if not self._sqlite:  # sqlite3 connections are in autocommit mode already
                driver.autocommit = True
            db = DriverConnection(self.engine, driver, {})
            try:
                yield db
            finally:
                _run_callbacks(db.info, AFTER_COMMIT)  # (each statement committed itself)
                if not self._sqlite:
                    try:
                        driver.autocommit = False  # as the pool hands connections out
                    except Exception:
                        pooled.invalidate()
        finally:
            pooled.close()

    # -- the request path: one awaitable interface (``store.connection``) ---------------------

    async def open_async(self, size: int) -> None:
        """Open the connections of operations awaited in this event loop (a server's
        start-up; they belong to its loop). PostgreSQL: ``size`` autocommit connections of
        psycopg's asynchronous driver. SQLite, which has none: one connection of the loop's
        own for reads, which in WAL mode never wait for a writer (a point lookup costs the
        loop microseconds, less than a trip to a worker thread and back); every write still
        goes to a worker thread (``SQLiteLoopConnection``)."""
        if self._async_loop is not None:
            return
        if self._sqlite:
            pooled = self.engine.raw_connection()  # held until close_async
            self._loop_sqlite, self._async_loop = pooled, asyncio.get_running_loop()
            return
        # The same connection parameters (TLS included) and type adapters as the engine's.
        args, kwargs = self.engine.dialect.create_connect_args(self.engine.url)
        adapters = kwargs.pop("context", None)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            make_conninfo(*args, **kwargs), min_size=size, max_size=size, open=False,
            kwargs={"autocommit": True, "context": adapters}, name="sellervault-event-loop")
        await pool.open(wait=True, timeout=30)
        self._async_pool, self._async_loop = pool, asyncio.get_running_loop()

    async def close_async(self) -> None:
        pool, self._async_pool, self._async_loop = self._async_pool, None, None
        sqlite, self._loop_sqlite = self._loop_sqlite, None
        if pool is not None:
            await pool.close()
        if sqlite is not None:
            sqlite.close()

    @property
    def has_loop_connections(self) -> bool:
        """Whether an event loop's connections are open (inside a started server):
        operations run from that loop are awaited in it."""
        return self._async_loop is not None

    @property
    def in_event_loop(self) -> bool:
        """Whether the caller is an operation awaited in the event loop whose connections are
        open (inside a started server), not one driven by ``call``."""
        loop = self._async_loop
        return loop is not None and not _DRIVEN.get() and _running_loop() is loop

    def execute_one(self, statement: Prepared, params: Mapping[str, Any]) -> int:
        """One statement on a connection of the pool, committed by itself (a write of an
        operation awaited in the event loop on SQLite, run on a worker thread)."""
        with self.read() as db:
            return statement.execute(db, params)

    async def run(self, operation: Callable[P, Coroutine[Any, Any, T]], *args: P.args,
                  **kwargs: P.kwargs) -> T:
        """Run a request-path operation from the event loop: awaited right here when the
        loop's connections are open (a started server: its blocking steps and, on SQLite,
        its writes go to worker threads), else driven on one worker thread."""
        if self.in_event_loop:
            return await operation(*args, **kwargs)
        return await anyio.to_thread.run_sync(
            functools.partial(self.call, operation, *args, **kwargs))

    def call(self, operation: Callable[P, Coroutine[Any, Any, T]], *args: P.args,
             **kwargs: P.kwargs) -> T:
        """Run a request-path operation from blocking code (the command line, a worker
        thread, a test) to its end, on this thread: its statements and blocking steps run
        right here (``connect`` gives it the blocking driver, ``offload`` runs inline)."""
        driven = _DRIVEN.set(True)
        try:
            return drive(operation(*args, **kwargs))
        finally:
            _DRIVEN.reset(driven)

    async def offload(self, function: Callable[P, T], *args: P.args,
                      **kwargs: P.kwargs) -> T:
        """Blocking work inside an operation (reading a key not cached yet, a transaction):
        on a worker thread when the operation is awaited in the event loop, else (driven by
        ``call``) right here."""
        if not _DRIVEN.get():
            return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs))
        return function(*args, **kwargs)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Connection]:
        """An autocommit connection for a request-path operation (see ``store.connection``):
        the event loop's own in a started server, the blocking driver's when driven."""
        if _DRIVEN.get():
            with self.read() as db:
                yield InlineConnection(db)
            return
        if not self.in_event_loop:
            raise RuntimeError("no event-loop connections here: run the operation with "
                               "Store.run (from the loop) or Store.call (blocking)")
        if self._loop_sqlite is not None:
            yield SQLiteLoopConnection(
                DriverConnection(self.engine, self._loop_sqlite.driver_connection, {}), self)
            return
        pool = self._async_pool
        assert pool is not None
        # getconn/putconn rather than pool.connection(): half the cost per use, and the
        # connections are in autocommit, so there is no transaction to end (putconn still
        # resets or discards one left in any other state).
        connection = await pool.getconn()
        # A connection whose server has gone is closed and handed back, which makes the pool
        # drop it and open a replacement (logging "discarding closed connection"), and another
        # is taken. Every pooled connection may be dead (a restart): after ``max_size`` of
        # them, the next is a new one. Not the pool's ``check`` callback: from the second
        # failed check in a row psycopg_pool (3.2.1+) sleeps 1 s, 2 s, 4 s... before taking
        # another, so after a restart four dead connections held a request 7 s.
        for _ in range(pool.max_size):
            if not server_gone(connection):
                break
            await connection.close()
            await pool.putconn(connection)
            connection = await pool.getconn()
        try:
            yield LoopConnection(self.engine, connection)
        finally:
            await pool.putconn(connection)

    @staticmethod
    def _driver_call(db: DriverConnection, statement: str) -> None:
        """BEGIN IMMEDIATE or COMMIT, with errors as SQLAlchemy's."""
        try:
            if statement == "COMMIT":
                db.driver.commit()
            else:
                db.driver.execute(statement)
        except db.dialect.loaded_dbapi.Error as exc:
            raise translate_error(db.dialect, statement, exc) from exc

    def reclaim_deleted(self) -> str:
        """Let the database drop what it still holds of deleted rows, where it can now: on
        SQLite a ``wal_checkpoint(TRUNCATE)`` (the write-ahead log's copies written back
        into the file, where ``secure_delete`` zeroed the freed space, and the log emptied).
        On PostgreSQL nothing here: a deleted row's old version stays in its table until
        VACUUM reuses the space, and in WAL segments, archives and replicas (``SqlKeyStore``:
        why the destroyed keys are what makes those copies unreadable). What was done."""
        if self.dialect != "sqlite":
            return "none (PostgreSQL: VACUUM reclaims space later; the keys are destroyed)"
        pooled = self.engine.raw_connection()  # (autocommit: a checkpoint runs outside any
        try:                                    # transaction)
            busy = pooled.driver_connection.execute(  # type: ignore[union-attr]
                "PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            pooled.close()
        if busy:  # a reader held the log: what it holds is written back at a later checkpoint
            return "sqlite secure_delete; wal_checkpoint(TRUNCATE) deferred by a reader"
        return "sqlite secure_delete, wal_checkpoint(TRUNCATE)"

    def dispose(self) -> None:
        self.engine.dispose()
