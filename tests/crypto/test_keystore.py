"""sellervault.crypto.keystore: where wrapped keys are kept (the SQL tables), on SQLite and on
PostgreSQL.

The specification, as tests:

- The store keeps and returns wrapped bytes as given; a tenant's data keys are only ever
  returned for that tenant; adding a tenant key version that exists adds nothing.
- ``destroy_data_keys`` deletes the tenant's listed data keys (None: all of them) and no
  other tenant's; it counts what it destroyed, so destroying twice counts nothing.
- ``destroy_tenant_keys`` destroys every wrapped tenant key and marks every version
  destroyed, keeping the rows (a version is never made again); retired versions keep the
  time they were retired.
- Re-wrapping (a rotation) never brings a destroyed key back.
- ``join_data_key`` finds an order's wrapped key, never another tenant's, and NULL once it
  is destroyed, or once the tenant key that wraps it is.
- ``hold_tenant``: a shared holder waits for an exclusive one at most TENANT_LOCK_WAIT_MS
  (PostgreSQL advisory locks; SQLite's writers take turns).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import literal, select, text

from sellervault.crypto import keystore
from sellervault.crypto.errors import TenantKeysBusyError
from sellervault.crypto.keystore import (
    ACTIVE,
    DESTROYED,
    SqlKeyStore,
    StoredDataKey,
    StoredTenantKey,
    join_data_key,
    tenant_lock_id,
)
from sellervault.store.base import Base
from sellervault.store.engine import Store
from tests.conftest import DATABASES, engine_with_tables

ACME = "acme"
GLOBEX = "globex"
MADE = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
KEYS = SqlKeyStore()


@pytest.fixture(params=DATABASES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh database with SellerVault's tables and nothing in them (no ``init``)."""
    with engine_with_tables(request.param, tmp_path, Base.metadata) as engine:
        yield Store(engine)


def wrapped(label: str) -> bytes:
    """Stand-in wrapped bytes: the store never looks inside what it keeps."""
    return f"wrapped:{label}".encode()


def add_tenant(store: Store, tenant_id: str, *versions: int) -> None:
    with store.transaction() as session:
        for version in versions:
            for purpose in ("kek", "index") if version == 1 else ("kek",):
                KEYS.add_tenant_key(session, StoredTenantKey(
                    tenant_id, purpose, version, 1, wrapped(f"{tenant_id}/{purpose}/{version}"),
                    ACTIVE), MADE)


def add_data_keys(store: Store, tenant_id: str, *ids: str, kek_version: int = 1) -> None:
    with store.transaction() as session:
        KEYS.add_data_keys(session, tenant_id, kek_version, MADE,
                            ((data_key_id, wrapped(data_key_id)) for data_key_id in ids))


def tenant_rows(store: Store, tenant_id: str) -> dict[tuple[str, int], StoredTenantKey]:
    with store.transaction() as session:
        return {(key.purpose, key.version): key for key in KEYS.tenant_keys(session, tenant_id)}


def data_rows(store: Store, tenant_id: str, *ids: str) -> dict[str, StoredDataKey]:
    with store.transaction() as session:
        return {key.id: key for key in KEYS.data_keys(session, tenant_id, ids)}


def test_keys_come_back_as_they_were_kept(store: Store) -> None:
    add_tenant(store, ACME, 1)
    add_data_keys(store, ACME, "dk-1", "dk-2")
    with store.transaction() as session:
        KEYS.add_tenant_key(session, StoredTenantKey(ACME, "kek", 1, 9, b"other", ACTIVE),
                             MADE)  # a second first ingest: adds nothing
        assert KEYS.active_version(session, ACME, "kek") == 1
        assert KEYS.active_version(session, GLOBEX, "kek") is None
    with store.read() as db:
        assert KEYS.tenant_key(db, ACME, "kek", 1) == StoredTenantKey(
            ACME, "kek", 1, 1, wrapped("acme/kek/1"), ACTIVE)
        assert KEYS.tenant_key(db, ACME, "kek", 2) is None
    assert data_rows(store, ACME, "dk-1", "dk-2", "dk-3") == {
        "dk-1": StoredDataKey("dk-1", 1, wrapped("dk-1")),
        "dk-2": StoredDataKey("dk-2", 1, wrapped("dk-2"))}
    assert data_rows(store, GLOBEX, "dk-1") == {}  # never another tenant's


def test_destroying_data_keys_deletes_only_the_tenants_listed_keys(store: Store) -> None:
    add_data_keys(store, ACME, "dk-1", "dk-2", "dk-3")
    add_data_keys(store, GLOBEX, "dk-9")
    with store.transaction() as session:
        assert KEYS.destroy_data_keys(session, ACME, ["dk-1", "dk-2", "dk-9"]) == 2
        assert KEYS.destroy_data_keys(session, ACME, []) == 0
    assert set(data_rows(store, ACME, "dk-1", "dk-2", "dk-3")) == {"dk-3"}
    assert set(data_rows(store, GLOBEX, "dk-9")) == {"dk-9"}
    with store.transaction() as session:
        assert KEYS.destroy_data_keys(session, ACME, ["dk-1"]) == 0  # twice: nothing more
        assert KEYS.destroy_data_keys(session, ACME, None) == 1  # all that is left
    assert data_rows(store, ACME, "dk-3") == {}
    assert set(data_rows(store, GLOBEX, "dk-9")) == {"dk-9"}


def test_destroying_a_tenants_keys_keeps_the_rows_without_the_keys(store: Store) -> None:
    add_tenant(store, ACME, 1, 2)
    add_tenant(store, GLOBEX, 1)
    retired_at, destroyed_at = MADE + timedelta(days=1), MADE + timedelta(days=2)
    with store.transaction() as session:
        KEYS.retire_tenant_keys(session, ACME, "kek", 2, retired_at)  # no data key: gone
    with store.transaction() as session:
        assert KEYS.destroy_tenant_keys(session, ACME, destroyed_at) == 2  # kek 2, index 1
    rows = tenant_rows(store, ACME)
    assert set(rows) == {("kek", 1), ("kek", 2), ("index", 1)}
    assert all(row.wrapped is None and row.status == DESTROYED for row in rows.values())
    with store.transaction() as session:
        assert KEYS.active_version(session, ACME, "kek") is None
        retired = {(row.purpose, row.version): row.retired_at for row in session.execute(
            select(keystore.TENANT_KEYS).where(keystore.TENANT_KEYS.c.tenant_id == ACME))}
        assert KEYS.destroy_tenant_keys(session, ACME, destroyed_at) == 0  # twice: nothing
    assert retired == {("kek", 1): retired_at, ("kek", 2): destroyed_at,
                       ("index", 1): destroyed_at}
    assert {row.status for row in tenant_rows(store, GLOBEX).values()} == {ACTIVE}
    add_tenant(store, ACME, 1)  # a first ingest after the destruction makes nothing again
    assert all(row.wrapped is None for row in tenant_rows(store, ACME).values())


def test_rewrapping_never_brings_a_destroyed_key_back(store: Store) -> None:
    """A rotation read the keys, then they were destroyed, then it writes them re-wrapped."""
    add_tenant(store, ACME, 1)
    add_data_keys(store, ACME, "dk-1", "dk-2")
    with store.transaction() as session:
        live = KEYS.live_data_keys(session, ACME)
        under_root = [key for key in KEYS.tenant_keys_under_root(session)
                      if key.tenant_id == ACME]
    with store.transaction() as session:
        KEYS.destroy_data_keys(session, ACME, ["dk-1"])
        KEYS.destroy_tenant_keys(session, ACME, MADE)
    with store.transaction() as session:
        KEYS.rewrap_data_keys(session, ACME, [StoredDataKey(key.id, 2, b"new") for key in live])
        KEYS.rewrap_tenant_keys(session, [StoredTenantKey(
            key.tenant_id, key.purpose, key.version, 2, b"new", key.status)
            for key in under_root])
    assert data_rows(store, ACME, "dk-1", "dk-2") == {"dk-2": StoredDataKey("dk-2", 2, b"new")}
    assert all(row.wrapped is None for row in tenant_rows(store, ACME).values())


def test_join_data_key_finds_the_key_of_the_tenant_and_null_once_destroyed(
        store: Store) -> None:
    add_tenant(store, ACME, 1)
    add_tenant(store, GLOBEX, 1)
    add_data_keys(store, ACME, "dk-1", "dk-3")
    add_data_keys(store, GLOBEX, "dk-2")

    def found(tenant_id: str, data_key_id: str) -> tuple[int | None, bytes | None]:
        wanted = select(literal(tenant_id).label("tenant_id"),
                        literal(data_key_id).label("data_key_id")).subquery()
        query = join_data_key(select(wanted.c.tenant_id), wanted.c.tenant_id,
                              wanted.c.data_key_id)
        with store.transaction() as session:
            row = session.execute(query).one()
        return row.data_key_kek_version, row.data_key_wrapped

    assert found(ACME, "dk-1") == (1, wrapped("dk-1"))
    assert found(ACME, "dk-2") == (None, None)  # another tenant's key: never joined
    with store.transaction() as session:
        KEYS.destroy_data_keys(session, ACME, ["dk-1"])
    assert found(ACME, "dk-1") == (None, None)
    # The tenant's keys destroyed, its data keys' rows not yet (an erasure deletes them
    # afterwards, a batch at a time): none is given out, so no process that still holds
    # the tenant's key-encryption key opens one.
    assert found(ACME, "dk-3") == (1, wrapped("dk-3"))
    with store.transaction() as session:
        KEYS.destroy_tenant_keys(session, ACME, MADE)
    assert found(ACME, "dk-3")[1] is None
    assert found(GLOBEX, "dk-2") == (1, wrapped("dk-2"))


def test_tenant_lock_ids_are_stable_and_distinct() -> None:
    assert tenant_lock_id(ACME) == tenant_lock_id(ACME)
    assert tenant_lock_id(ACME) != tenant_lock_id(GLOBEX)
    assert -(2**63) <= tenant_lock_id(ACME) < 2**63


def test_a_shared_holder_waits_for_an_exclusive_one_only_so_long(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a rotation or a destruction holds a tenant's keys, an ingest of that tenant gives
    up after TENANT_LOCK_WAIT_MS (503, try again) instead of holding a worker thread for the
    whole of it. Other tenants are not held up."""
    if store.dialect != "postgresql":
        pytest.skip("SQLite's writers take turns: there is no lock to wait on")
    monkeypatch.setattr(keystore, "TENANT_LOCK_WAIT_MS", 200)
    with store.engine.connect() as rotation:
        rotation.execute(select(text(f"pg_advisory_xact_lock({tenant_lock_id(ACME)})")))
        started = time.monotonic()
        with pytest.raises(TenantKeysBusyError), store.transaction() as session:
            KEYS.hold_tenant(session, ACME, exclusive=False)
        assert time.monotonic() - started < 5
        with store.transaction() as session:
            KEYS.hold_tenant(session, GLOBEX, exclusive=False)  # another tenant goes on
        rotation.rollback()
    with store.transaction() as session:
        KEYS.hold_tenant(session, ACME, exclusive=False)  # and once it is done, so does this

