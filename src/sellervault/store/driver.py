"""The driver's own connection under SQLAlchemy (sqlite3 or psycopg), for the hot path.

``Store.read`` and ``Store.write`` hand one out: a pooled connection with no SQLAlchemy
``Connection`` around it, which saves a request its per-use bookkeeping (connection object,
transaction object, events). Only ``Prepared`` statements run on it. ``driver_of`` gives the
same view of an ORM session or a Core connection, so a service function that appends to the
security log or reads a key works inside any of the three. The request path's operations run
their statements through ``store.connection``, one awaitable interface over both drivers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class DriverConnection:
    engine: Engine
    driver: Any
    """The DBAPI connection: ``sqlite3.Connection`` or ``psycopg.Connection``."""
    info: dict[str, Any]
    """Per-transaction notes (``after_commit`` hooks), like ``Session.info``."""

    @property
    def dialect(self) -> Dialect:
        return self.engine.dialect


Db = Session | Connection | DriverConnection
"""Where a statement runs: an ORM session, a Core connection, or a driver connection."""


def driver_of(db: Db) -> DriverConnection:
    """The driver connection under ``db``, in the same transaction. A session's pending ORM
    changes are flushed first (as an ORM query would autoflush), so the statement sees them."""
    if isinstance(db, DriverConnection):
        return db
    if isinstance(db, Session):
        db.flush()
        db = db.connection()
    return DriverConnection(db.engine, db.connection.driver_connection, db.info)


def translate_error(dialect: Dialect, statement: str, exc: Exception) -> DBAPIError:
    """A driver error as SQLAlchemy's exception class for it (what callers catch), never
    showing the statement's parameters."""
    error = DBAPIError.instance(statement, None, exc, dialect.loaded_dbapi.Error,
                                hide_parameters=True, dialect=dialect)
    return cast(DBAPIError, error)  # (a driver Error subclass always maps to a DBAPIError)
