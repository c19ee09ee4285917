"""Prepared statements read and write exactly what ``Connection.execute`` would.

- Rows come back with the same values, converted by the same types (text, bytes, booleans,
  integers, NULLs, aware UTC datetimes), under the statement's column names and labels.
- Parameters are converted as SQLAlchemy converts them; values written into the statement
  (``id == 1``) are kept; a write reports how many rows it changed.
- It runs in the caller's transaction; a driver error is SQLAlchemy's exception for it, and
  never shows the parameters. IN-list parameters are refused when the statement is made.
- The awaited form (``store.connection``) has its own specification: test_connection.py.
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
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from sellervault.store.prepared import Prepared
from sellervault.store.types import UTCDateTime
from tests.conftest import engine_with_tables

metadata = MetaData()
THINGS = Table("things", metadata,
               Column("id", Integer, primary_key=True),
               Column("name", String(32), nullable=False),
               Column("blob", LargeBinary),
               Column("flag", Boolean),
               Column("at", UTCDateTime))
ROWS: list[dict[str, Any]] = [
    {"id": 1, "name": "é \u2028 'q'", "blob": b"\x00\xff" * 8, "flag": True,
     "at": datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))},
    {"id": 2, "name": "two", "blob": None, "flag": False, "at": None},
    {"id": 3, "name": "three", "blob": b"", "flag": None,
     "at": datetime(2026, 1, 1, tzinfo=UTC)},
]
BY_NAME = select(THINGS, THINGS.c.name.label("alias")).where(
    THINGS.c.name == bindparam("name"))
ALL = select(THINGS).where(THINGS.c.id >= bindparam("from_id")).order_by(THINGS.c.id)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with engine_with_tables(request.param, tmp_path, metadata) as created:
        with created.begin() as connection:
            connection.execute(insert(THINGS), ROWS)
        yield created


def test_rows_are_what_connection_execute_returns(engine: Engine) -> None:
    with engine.connect() as connection:
        expected = [row._asdict() for row in connection.execute(ALL, {"from_id": 0})]
        got = [row._asdict() for row in Prepared(ALL).all(connection, {"from_id": 0})]
    assert got == expected
    assert got[0]["at"].tzinfo == UTC and got[0]["at"] == ROWS[0]["at"]
    assert [row["blob"] for row in got] == [ROWS[0]["blob"], None, b""]


def test_parameters_are_converted_and_labels_kept(engine: Engine) -> None:
    at = datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))  # = row 3's instant
    by_time = Prepared(select(THINGS.c.id).where(
        THINGS.c.at == bindparam("at", type_=UTCDateTime)))
    with engine.connect() as connection:
        row = Prepared(BY_NAME).first(connection, {"name": ROWS[0]["name"]})
        assert row is not None and row.alias == ROWS[0]["name"] and row.id == 1
        assert Prepared(BY_NAME).first(connection, {"name": "nobody"}) is None
        assert [r.id for r in by_time.all(connection, {"at": at})] == [3]


def test_writes_keep_constants_and_count_rows_in_the_callers_transaction(
        engine: Engine) -> None:
    rename = Prepared(update(THINGS).where(THINGS.c.id == 2)  # 2 is written into the SQL
                      .values(name=bindparam("new_name")))
    with engine.connect() as connection:
        with connection.begin() as transaction:
            assert rename.execute(connection, {"new_name": "renamed"}) == 1
            transaction.rollback()
        assert Prepared(BY_NAME).first(connection, {"name": "renamed"}) is None
        with connection.begin():
            assert rename.execute(connection, {"new_name": "renamed"}) == 1
    with engine.connect() as connection:
        assert Prepared(BY_NAME).first(connection, {"name": "renamed"}) is not None


def test_a_driver_error_is_sqlalchemys_and_hides_the_parameters(engine: Engine) -> None:
    add = Prepared(insert(THINGS).values(id=bindparam("id"), name=bindparam("name")))
    with engine.connect() as connection, connection.begin(), \
            pytest.raises(IntegrityError) as failed:
        add.execute(connection, {"id": 1, "name": "secret-value-4242"})
    assert "secret-value-4242" not in str(failed.value)


def test_in_list_parameters_are_refused(engine: Engine) -> None:
    query = Prepared(select(THINGS).where(THINGS.c.id.in_(bindparam("ids", expanding=True))))
    with engine.connect() as connection, pytest.raises(ValueError, match="IN-list"):
        query.all(connection, {"ids": [1, 2]})
