"""Bulk inserts (COPY on PostgreSQL, executemany on SQLite) store what Core's INSERT stores.

- Every column's stored value is the one ``session.execute(insert(table), rows)`` stores:
  text, bytes, booleans, integers, NULLs, and datetimes given in any zone.
- Constraints hold as for INSERT (a too-long string, a duplicate key), and a failure or a
  rollback leaves no row behind.
- A row missing a column, or a column the table lacks, is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from sellervault.store.bulk import BulkInsert
from sellervault.store.types import UTCDateTime
from tests.conftest import engine_with_tables

metadata = MetaData()


def _table(name: str) -> Table:
    return Table(name, metadata,
                 Column("id", String(8), primary_key=True),
                 Column("body", Text, nullable=False),
                 Column("blob", LargeBinary),
                 Column("flag", Boolean, nullable=False),
                 Column("number", Integer),
                 Column("at", UTCDateTime),
                 Column("maybe", String(16)))


CORE = _table("via_core")
BULK = _table("via_bulk")
COLUMNS = [column.name for column in BULK.columns]
PLUS_TWO = timezone(timedelta(hours=2))
SAME = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ROWS: list[dict[str, Any]] = [
    {"id": "a", "body": "plain", "blob": b"\x00\x01\xff" * 20, "flag": True, "number": 7,
     "at": SAME, "maybe": None},
    {"id": "b", "body": "é - \u2028 'quoted' \\ tab\t", "blob": b"", "flag": False,
     "number": -(2**31), "at": SAME, "maybe": "x"},
    {"id": "c", "body": "", "blob": None, "flag": False, "number": None,
     "at": datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=PLUS_TWO), "maybe": "y" * 16},
    {"id": "d", "body": "\\N", "blob": b"\\N", "flag": True, "number": 2**31 - 1, "at": None,
     "maybe": ""},
]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with engine_with_tables(request.param, tmp_path, metadata) as created:
        yield created


def _raw(engine: Engine, table: Table) -> list[tuple[Any, ...]]:
    """The stored values as the database returns them, with no type processing."""
    with engine.connect() as connection:
        rows = connection.execute(text(f"SELECT * FROM {table.name} ORDER BY id")).all()
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]


def test_stores_what_core_insert_stores(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.execute(insert(CORE), ROWS)
        BulkInsert(BULK, COLUMNS).execute(session, ROWS)
    assert _raw(engine, BULK) == _raw(engine, CORE)
    with engine.connect() as connection:
        back = connection.execute(select(BULK).order_by(BULK.c.id)).all()
    assert [row._asdict() for row in back] == ROWS


def test_a_duplicate_key_fails_as_insert_does_and_leaves_nothing(engine: Engine) -> None:
    with pytest.raises(IntegrityError) as failed, Session(engine) as session, session.begin():
        BulkInsert(BULK, COLUMNS).execute(session, [ROWS[0], {**ROWS[1], "id": "a"}])
    if engine.dialect.name == "postgresql":  # COPY's own error: never the rows' values
        assert "\u2028" not in str(failed.value) and "tab" not in str(failed.value)
    assert _raw(engine, BULK) == []


@pytest.mark.parametrize("bad", [{"id": "x" * 9}, {"maybe": "z" * 17}])
def test_string_lengths_hold_on_postgresql(engine: Engine, bad: dict[str, Any]) -> None:
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite does not enforce VARCHAR(n)")
    with pytest.raises(DBAPIError), Session(engine) as session, session.begin():
        BulkInsert(BULK, COLUMNS).execute(session, [ROWS[0], {**ROWS[1], **bad}])
    assert _raw(engine, BULK) == []


def test_rows_are_part_of_the_callers_transaction(engine: Engine) -> None:
    with Session(engine) as session:
        session.begin()
        BulkInsert(BULK, COLUMNS).execute(session, ROWS)
        session.rollback()
    assert _raw(engine, BULK) == []


def test_columns_are_checked() -> None:
    with pytest.raises(ValueError, match="not columns"):
        BulkInsert(BULK, ["id", "nope"])


def test_a_row_missing_a_column_is_refused(engine: Engine) -> None:
    incomplete = {key: value for key, value in ROWS[0].items() if key != "flag"}
    with pytest.raises(KeyError, match="flag"), Session(engine) as session, session.begin():
        BulkInsert(BULK, COLUMNS).execute(session, [incomplete])
    assert _raw(engine, BULK) == []
