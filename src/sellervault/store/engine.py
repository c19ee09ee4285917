"""Database engine and transactions.

SQLite (the embedded default) runs in WAL mode with ``secure_delete`` so deleted rows are
overwritten rather than left in free pages, and every transaction begins IMMEDIATE so the
security-log chain head is never read by two writers at once. Writers of one process queue
on a lock before SQLite's: SQLite lets one writer in at a time anyway, and its busy handler
waits by sleeping (1 ms, 2 ms, 5 ms...), so threads colliding on the database lock would
leave the CPU idle. PostgreSQL is reached through psycopg 3; a TCP connection to a
non-loopback host must use TLS (checked in config).

``Store.read`` is for lookups that are one statement: no transaction of their own (each
statement is atomic), so no write lock, no BEGIN and no COMMIT.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from sellervault.config import check_database_url

NO_TRANSACTION = "sellervault_no_transaction"
"""Execution option of ``Store.read`` connections on SQLite: the BEGIN listener skips them."""
AFTER_COMMIT = "sellervault_after_commit"
WRITER_TIMEOUT_SECONDS = 30.0  # as SQLite's busy_timeout


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
    # No pre-ping: it would add a round trip to every transaction; stale connections are
    # recycled instead, and a dropped one fails its request once (500), never silently.
    return create_engine(url, pool_size=10, max_overflow=10, pool_recycle=1800)


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
        cursor.close()
        _owner_only(database)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if not connection.get_execution_options().get(NO_TRANSACTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def _owner_only(database: str | None) -> None:
    """The database file and its WAL hold ciphertexts and the security log: owner-only,
    whatever the umask (SQLite gives the -wal and -shm files the database file's mode)."""
    if not database or database == ":memory:":
        return
    for suffix in ("", "-wal", "-shm"):
        path = Path(database + suffix)
        if path.exists() and path.stat().st_mode & 0o077:
            path.chmod(0o600)


def core_connection(db: Session | Connection) -> Connection:
    """The Core connection of a ``Store.transaction`` session or a ``Store.write`` connection.
    A session's pending ORM changes are flushed first (as an ORM query would autoflush), so
    Core statements see them."""
    if isinstance(db, Session):
        db.flush()
        return db.connection()
    return db


def after_commit(db: Session | Connection, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the transaction of ``db`` (a ``Store.transaction`` session or a
    ``Store.write`` connection) commits; never if it rolls back."""
    db.info.setdefault(AFTER_COMMIT, []).append(callback)


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
        sqlite = engine.dialect.name == "sqlite"
        self._writer: AbstractContextManager[None] = _WriterLock() if sqlite else nullcontext()
        self._reader = engine.execution_options(
            **({NO_TRANSACTION: True} if sqlite else {"isolation_level": "AUTOCOMMIT"}))

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(make_engine(url))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back on any exception."""
        with self._writer, self._sessions.begin() as session:
            yield session
        for callback in session.info.get(AFTER_COMMIT, ()):
            callback()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """``transaction()`` on a Core connection, for a hot path that needs no ORM (an ORM
        session costs ~55 us more per transaction). Committed when the block ends, rolled
        back on any exception."""
        with self._writer, self.engine.begin() as connection:
            # connection.info lives as long as the pooled connection: take the hooks out
            hooks: list[Callable[[], None]] = connection.info.setdefault(AFTER_COMMIT, [])
            try:
                yield connection
            finally:
                connection.info.pop(AFTER_COMMIT, None)
        for callback in hooks:
            callback()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection whose every statement runs on its own (autocommit): for a lookup
        that is a single statement, it needs no transaction, so it costs no BEGIN/COMMIT
        and never waits for a writer. Never write through it."""
        with self._reader.connect() as connection:
            yield connection

    def dispose(self) -> None:
        self.engine.dispose()
