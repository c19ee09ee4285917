"""Migrations that move data, on both databases, from the revision before them.

0004 (account mailbox keys): every existing person gets the mailbox key the service would
give them now, and their email its new normal form (so they still log in); services get
none. Two existing people who are one mailbox stop the upgrade with a message naming the
accounts, never the emails, and leave the database exactly as it was (still 0003). The
downgrade drops the column; upgrading again works.

0005 (search criteria in events) cannot be rolled back once an event records criteria. 0006 (job
runs) rolls back leaving the runs' events in the log, which still verifies.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Table, column, insert, inspect, select, table, text
from sqlalchemy.exc import IntegrityError

from sellervault.access.actions import Action
from sellervault.accounts.identity import mailbox
from sellervault.accounts.models import Account
from sellervault.records import service as records
from sellervault.records.models import ErasedOrder
from sellervault.records.spapi import map_order, validate_order
from sellervault.records.synthetic import synthetic_orders
from sellervault.runtime import Runtime
from sellervault.store import migrate
from sellervault.store.engine import make_engine
from sellervault.store.types import UTCDateTime

CYRILLIC_A = "\N{CYRILLIC SMALL LETTER A}"
CYRILLIC_ER = "\N{CYRILLIC SMALL LETTER ER}"


def fullwidth(text: str) -> str:
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


@pytest.fixture
def at_0003(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    """A database migrated to 0003, the schema before mailbox keys."""
    (tmp_path / "data").mkdir(exist_ok=True)
    engine = make_engine(database_url)
    migrate.upgrade(engine, "0003")
    try:
        yield engine
    finally:
        engine.dispose()


def add_account(engine: Engine, account_id: str, email: str | None,
                kind: str = "person") -> None:
    """A row as the code before 0004 wrote it (its email trimmed and lower-cased)."""
    with engine.begin() as connection:
        connection.execute(insert(Account.__table__).values(
            id=account_id, kind=kind, email=email.strip().lower() if email else None,
            name=f"Person {account_id}", status="active", must_change_password=False,
            totp_last_step=0, failed_logins=0, created_at=datetime.now(UTC)))


def rows(engine: Engine) -> dict[str, dict[str, Any]]:
    """Every account row, with the columns the database has (not the model's)."""
    accounts = Table("accounts", MetaData(), autoload_with=engine)
    with engine.connect() as connection:
        return {row.id: dict(row._mapping) for row in connection.execute(select(accounts))}


def revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def columns(engine: Engine) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns("accounts")}


def key_of(email: str) -> str:
    found = mailbox(email)
    assert found is not None
    return found.key


def test_0004_gives_every_person_a_mailbox_key_and_a_normalised_email(
        at_0003: Engine) -> None:
    add_account(at_0003, "acc_alice", "Alice.Admin@Example.test")
    add_account(at_0003, "acc_pat", "pat.picker+orders@example.test")
    add_account(at_0003, "acc_sam", fullwidth("Sam.Okafor@Example.test"))
    add_account(at_0003, "acc_legacy", "+legacy@example.test")  # accepted before, no mailbox
    add_account(at_0003, "svc_sync", None, kind="service")
    migrate.upgrade(at_0003)
    assert migrate.is_current(at_0003)
    after = rows(at_0003)
    assert after["acc_alice"]["email"] == "alice.admin@example.test"
    assert after["acc_alice"]["mailbox_key"] == key_of("alice.admin@example.test")
    assert after["acc_pat"]["email"] == "pat.picker+orders@example.test"
    assert after["acc_pat"]["mailbox_key"] == key_of("pat.picker@example.test")
    assert after["acc_sam"]["email"] == "sam.okafor@example.test"  # as login now looks it up
    assert after["acc_sam"]["mailbox_key"] == key_of("sam.okafor@example.test")
    assert after["acc_legacy"]["mailbox_key"] == "+legacy@example.test"
    assert after["svc_sync"]["mailbox_key"] is None

    with pytest.raises(IntegrityError), at_0003.begin() as connection:  # the index guards
        connection.execute(insert(Account.__table__).values(
            id="acc_pat2", kind="person", email=f"{CYRILLIC_ER}{CYRILLIC_A}t.picker@x.test",
            mailbox_key=after["acc_pat"]["mailbox_key"], name="Pat Again", status="active",
            must_change_password=False, totp_last_step=0, failed_logins=0,
            created_at=datetime.now(UTC)))


def test_0004_stops_on_two_people_with_one_mailbox_and_changes_nothing(
        at_0003: Engine) -> None:
    add_account(at_0003, "acc_pat", "pat.picker@example.test")
    add_account(at_0003, "acc_zoe", "zoe.angstrom@example.test")
    lookalike = f"{CYRILLIC_ER}{CYRILLIC_A}t.picker@example.test"
    add_account(at_0003, "acc_pat_lookalike", lookalike)
    before = rows(at_0003)
    with pytest.raises(RuntimeError, match="same mailbox") as stopped:
        migrate.upgrade(at_0003)
    message = str(stopped.value)
    assert "acc_pat" in message and "acc_pat_lookalike" in message
    assert "picker" not in message and lookalike not in message
    assert revision(at_0003) == "0003"
    assert "mailbox_key" not in columns(at_0003)
    assert rows(at_0003) == before


def test_0004_downgrades_and_upgrades_again(at_0003: Engine) -> None:
    add_account(at_0003, "acc_pat", "pat.picker@example.test")
    migrate.upgrade(at_0003)
    migrate.downgrade(at_0003, "0003")
    assert revision(at_0003) == "0003"
    assert "mailbox_key" not in columns(at_0003)
    assert rows(at_0003)["acc_pat"]["email"] == "pat.picker@example.test"
    migrate.upgrade(at_0003)
    assert rows(at_0003)["acc_pat"]["mailbox_key"] == key_of("pat.picker@example.test")


# -- 0005: search criteria in the security log -----------------------------------------------

def test_0005_downgrade_is_refused_once_events_record_criteria(runtime: Runtime) -> None:
    """Events with criteria carry it in their MACs: dropping the column would break the log's
    verification, so the downgrade refuses and changes nothing; without such events it
    goes through and upgrading again works."""
    from sellervault.audit import verification, writing
    from sellervault.audit.events import Actor, Channel, Outcome, SecurityEvent

    engine = runtime.store.engine
    migrate.downgrade(engine, "0004")  # no criteria yet: allowed
    migrate.upgrade(engine, "head")
    with runtime.store.transaction() as session:
        writing.record(session, runtime.audit, SecurityEvent(
            Action.ORDERS_SEARCH, Outcome.SUCCESS, Actor(Channel.API), criteria="postal-code"))
    with pytest.raises(Exception, match="record search criteria"):
        migrate.downgrade(engine, "0004")
    assert "criteria" in {c["name"] for c in inspect(engine).get_columns("security_events")}
    migrate.upgrade(engine)  # (SQLite keeps the steps down to 0005 that went through)
    assert verification.verify(runtime.store, runtime.keyring).ok


# -- 0006: job runs --------------------------------------------------------------------------

def test_0006_downgrades_leaving_the_runs_events_in_the_log(runtime: Runtime) -> None:
    from sellervault.audit import verification
    from sellervault.bootstrap import cli_actor
    from sellervault.jobs.registry import JOBS
    from sellervault.jobs.runner import Runner

    engine = runtime.store.engine
    Runner(runtime, JOBS, cli_actor()).run_now("sessions-purge")
    migrate.downgrade(engine, "0005")
    assert "job_runs" not in inspect(engine).get_table_names()
    with engine.connect() as connection:
        assert connection.execute(text(
            "SELECT count(*) FROM security_events WHERE action = 'jobs:run'")).scalar() == 1
    migrate.upgrade(engine)
    assert migrate.is_current(engine)
    assert verification.verify(runtime.store, runtime.keyring).ok
    assert "job_runs" in inspect(engine).get_table_names()


# -- 0015: the buyer's pseudonym in events -----------------------------------------------------

def test_0015_downgrade_is_refused_once_events_name_a_buyer(runtime: Runtime) -> None:
    """The pseudonym is in those events' MACs: dropping the column would break the log."""
    from sellervault.audit import verification, writing
    from sellervault.audit.events import Actor, Channel, Outcome, SecurityEvent

    engine = runtime.store.engine
    migrate.downgrade(engine, "0014")  # no pseudonyms yet: allowed
    assert "buyer" not in {c["name"] for c in inspect(engine).get_columns("security_events")}
    migrate.upgrade(engine)
    with runtime.store.transaction() as session:
        writing.record(session, runtime.audit, SecurityEvent(
            Action.ORDERS_READ, Outcome.SUCCESS, Actor(Channel.API), buyer="byr_" + "0" * 32))
    with pytest.raises(Exception, match="name a buyer's pseudonym"):
        migrate.downgrade(engine, "0014")
    assert "buyer" in {c["name"] for c in inspect(engine).get_columns("security_events")}
    assert verification.verify(runtime.store, runtime.keyring).ok


def test_0020_computes_every_orders_lifetimes_as_ingest_does(runtime: Runtime) -> None:
    """Orders stored before 0020 get the PII and order expiries an ingest would give them
    (downgraded to 0019, their columns gone, then upgraded again)."""
    orders = [map_order(validate_order(o)) for o in synthetic_orders(5)]
    orders[0].clear.pop("LatestShipDate")  # no date: no PII expiry yet
    with runtime.store.transaction() as session:
        records.store_orders(session, runtime.keyring, "acme", orders, runtime.clock.now())
    engine = runtime.store.engine
    with engine.connect() as connection:
        query = text("SELECT amazon_order_id, pii_expires_at, expires_at FROM orders "
                     "ORDER BY amazon_order_id")
        stored = connection.execute(query).all()
    assert stored[0][1] is None and all(row[1] is not None for row in stored[1:])
    migrate.downgrade(engine, "0019")
    assert "pii_expires_at" not in {c["name"] for c in inspect(engine).get_columns("orders")}
    migrate.upgrade(engine)
    with engine.connect() as connection:
        assert connection.execute(query).all() == stored


def test_0028_gives_earlier_tombstones_the_longest_life_their_order_can_have_had(
        runtime: Runtime) -> None:
    """Tombstones written before 0028 had no expiry: 18 months after their erasure (no
    order can have had longer left), none dropped early."""
    engine = runtime.store.engine
    migrate.downgrade(engine, "0027")
    erased_at = datetime.fromisoformat("2026-08-31T10:00:00+00:00")
    before = table("erased_orders", column("tenant_id"), column("order_digest"),
                   column("erased_at", UTCDateTime()))
    with engine.begin() as connection:
        connection.execute(insert(before).values(tenant_id="acme", order_digest=b"\x01" * 32,
                                                 erased_at=erased_at))
    migrate.upgrade(engine)
    with runtime.store.transaction() as session:
        [expires_at] = session.scalars(select(ErasedOrder.expires_at)).all()
    assert expires_at == datetime.fromisoformat("2028-02-29T10:00:00+00:00")
