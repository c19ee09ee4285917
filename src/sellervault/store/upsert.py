"""The INSERT that can say ON CONFLICT, for the database a session is on: SQLAlchemy keeps it
per dialect (PostgreSQL's and SQLite's, the same methods), and both are supported here."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session


def insert_into(session: Session, table: Table) -> PostgresInsert | SqliteInsert:
    """``insert(table)`` with ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)
