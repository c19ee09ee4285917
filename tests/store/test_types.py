"""Column types and row ids: what is stored must not depend on how fast it is computed.

- ``UTCDateTime`` on SQLite stores exactly the text SQLAlchemy's generic chain stores
  (``process_bind_param`` then the SQLite ``DATETIME`` processor), for any aware datetime in
  any zone; naive datetimes are refused; values read back are the same instants, in UTC.
- Row ids are RFC 9562 UUIDv7 in 32 hex digits: time-ordered by millisecond, 74 random bits.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text
from sqlalchemy.dialects import sqlite

from sellervault.clock import ManualClock
from sellervault.store.engine import make_engine
from sellervault.store.ids import new_id, new_ids
from sellervault.store.types import UTCDateTime

SQLITE = sqlite.dialect()
aware = st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30),
                     timezones=st.timezones())


def _generic_sqlite(value: datetime) -> str:
    """What SQLAlchemy stores for a UTCDateTime without the fast processor."""
    column_type = UTCDateTime()
    impl = column_type.impl_instance.dialect_impl(SQLITE).bind_processor(SQLITE)
    assert impl is not None
    stored: str = impl(column_type.process_bind_param(value, SQLITE))
    return stored


@settings(max_examples=500, deadline=None)
@given(value=aware)
def test_sqlite_text_is_the_generic_chains_text(value: datetime) -> None:
    process = UTCDateTime().dialect_impl(SQLITE).bind_processor(SQLITE)
    assert process is not None
    assert process(value) == _generic_sqlite(value)
    assert process(None) is None


def _generic_sqlite_read(stored: str) -> datetime | None:
    """What SQLAlchemy reads back from a UTCDateTime's text without the fast processor."""
    column_type = UTCDateTime()
    impl = column_type.impl_instance.dialect_impl(SQLITE).result_processor(SQLITE, None)
    assert impl is not None
    return column_type.process_result_value(impl(stored), SQLITE)


@settings(max_examples=500, deadline=None)
@given(value=aware)
def test_sqlite_reads_back_what_the_generic_chain_reads(value: datetime) -> None:
    read = UTCDateTime().dialect_impl(SQLITE).result_processor(SQLITE, None)
    assert read is not None
    stored = _generic_sqlite(value)
    back = read(stored)
    assert back == _generic_sqlite_read(stored)
    assert back.tzinfo == UTC
    assert read("2026-03-28 23:30:15") == _generic_sqlite_read("2026-03-28 23:30:15")
    assert read(None) is None


def test_naive_datetimes_are_refused() -> None:
    process = UTCDateTime().dialect_impl(SQLITE).bind_processor(SQLITE)
    assert process is not None
    with pytest.raises(ValueError, match="naive"):
        process(datetime(2026, 1, 1))  # naive on purpose


def test_stored_and_read_back_through_sqlite(tmp_path: Path) -> None:
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True),
                  Column("at", UTCDateTime))
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    table.metadata.create_all(engine)
    moment = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    with engine.begin() as connection:
        connection.execute(insert(table), [{"id": 1, "at": moment}, {"id": 2, "at": None}])
    with engine.connect() as connection:
        assert connection.execute(text("SELECT at FROM t WHERE id = 1")).scalar() == \
            "2026-03-28 23:30:15.123456"
        back = connection.execute(select(table.c.at).where(table.c.id == 1)).scalar_one()
        assert back == moment and back.tzinfo == UTC
        assert connection.execute(select(table.c.at).where(table.c.id == 2)).scalar() is None
    engine.dispose()


def test_ids_are_uuid7_hex_in_time_order() -> None:
    clock = ManualClock(datetime(2026, 12, 4, 21, 0, 0, 123456, tzinfo=UTC))
    ids = new_ids(1000, clock.now())
    assert len(set(ids)) == 1000
    for value in [*ids, new_id(clock.now())]:
        assert len(value) == 32 and value == value.lower()
        parsed = uuid.UUID(hex=value)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert int(value[:12], 16) == int(clock.timestamp() * 1000)  # the clock's millisecond
    earlier = new_ids(1, clock.now())[0]
    clock.advance(0.001)
    assert new_ids(1, clock.now())[0][:12] > earlier[:12]  # a later millisecond sorts after


def test_ids_keep_74_random_bits() -> None:
    values = [int(value, 16) for value in new_ids(4000, ManualClock().now())]
    varying = [bit for bit in range(80)
               if 0 < sum((value >> bit) & 1 for value in values) < len(values)]
    fixed = {76, 77, 78, 79, 62, 63}  # version 7 and the RFC variant
    assert set(varying) == set(range(80)) - fixed
    assert len(varying) == 74
