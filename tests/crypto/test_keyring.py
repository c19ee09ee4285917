"""sellervault.crypto.keyring: the key hierarchy (root key -> tenant keys -> one data key per
order), on SQLite and on PostgreSQL.

The specification, as tests:

- ``ensure_tenant`` gives a tenant one key-encryption key and one blind-index key, once.
- A tenant's data keys are only ever returned for that tenant: asking with another tenant's
  id, or copying a wrapped data key to another tenant or row, fails; never a partial answer.
- A destroyed data key (``wrapped`` NULL) raises DataKeyDestroyedError: the data it
  protected is erased.
- ``rotate_root`` re-wraps every tenant and system key under a new root version and leaves
  data keys alone; after the old root version is retired a fresh process still reads
  everything.
- ``rotate_tenant_key`` re-wraps the tenant's data keys (same ids, new version), destroys the
  old tenant key, and orders stored before the rotation still reveal.
- Every time kept with a key (made, retired, destroyed) is read from the keyring's clock.
- ``destroy_data_keys`` erases those orders (``OrderErasedError`` on reveal) in this process
  and a fresh one, with the tenant key cached (in the event loop too); another tenant's key
  is not touched; re-sending an erased order makes no key again; destroying twice counts
  nothing.
- ``destroy_tenant_keys`` destroys the tenant's data keys and every version of its tenant
  keys: its orders are erased, its blind index, new data keys and rotation are refused, an
  ingest is refused (``TenantKeysDestroyedError``), nothing of it stays cached, other
  tenants are untouched, destroying twice counts nothing.
- The races: a key read just before the destruction commits is not cached after it, and one
  read while it is uncommitted is evicted when it commits; an ingest in flight has its data
  keys destroyed too; data keys destroyed while a rotation re-wraps are not made again; on
  PostgreSQL, a destruction racing reveals and ingests leaves no key half-destroyed or made
  again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import select, text, update

from sellervault.audit import verification, writing
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel
from sellervault.clock import ManualClock
from sellervault.config import Settings
from sellervault.crypto.aead import bind
from sellervault.crypto.errors import DecryptionError, TenantKeysDestroyedError
from sellervault.crypto.keyring import (
    DataKeyDestroyedError,
    DestroyedKeys,
    KeyNotCachedError,
    Keyring,
    NewDataKey,
    UnknownTenantKeyError,
)
from sellervault.crypto.keystore import SqlKeyStore
from sellervault.crypto.models import DataKey, SystemKey, TenantKey
from sellervault.crypto.provider import LocalKeyProvider
from sellervault.records import service as records
from sellervault.records.errors import OrderErasedError
from sellervault.records.models import Order
from sellervault.records.spapi import map_order, validate_order
from sellervault.records.synthetic import synthetic_orders
from sellervault.runtime import Runtime
from tests.support import in_event_loop

ACME = "acme"
GLOBEX = "globex"
EMAIL = "buyer-email"


CANARIES = Settings.model_fields["canaries_per_tenant"].default
"""A tenant's first ingest stores its canaries too (``records.canaries``), each with its key."""


def fresh_keyring(runtime: Runtime) -> Keyring:
    """What a newly started process would build: nothing cached, the key file read again."""
    return Keyring(LocalKeyProvider(runtime.settings.root_key_file), runtime.clock)


def fresh_runtime(runtime: Runtime) -> Runtime:
    return Runtime(runtime.settings, runtime.store, fresh_keyring(runtime), runtime.clock)


def seal_under(keys: list[NewDataKey]) -> dict[str, bytes]:
    """One ciphertext per data key, to check later that the same key comes back."""
    return {key.id: key.cipher.seal(key.id.encode(), bind("test", key.id)) for key in keys}


def assert_same_keys(ciphers: dict[str, Any], sealed: dict[str, bytes]) -> None:
    assert set(ciphers) == set(sealed)
    for key_id, value in sealed.items():
        assert ciphers[key_id].open(value, bind("test", key_id)) == key_id.encode()


def tenant_keys(runtime: Runtime) -> dict[tuple[str, str, int], TenantKey]:
    with runtime.store.transaction() as session:
        rows = session.scalars(select(TenantKey)).all()
        return {(row.tenant_id, row.purpose, row.version): row for row in rows}


def data_keys(runtime: Runtime, tenant_id: str) -> dict[str, DataKey]:
    with runtime.store.transaction() as session:
        rows = session.scalars(select(DataKey).where(DataKey.tenant_id == tenant_id)).all()
        return {row.id: row for row in rows}


def system_keys(runtime: Runtime) -> dict[str, SystemKey]:
    with runtime.store.transaction() as session:
        return {row.name: row for row in session.scalars(select(SystemKey)).all()}


def ingest(runtime: Runtime, tenant_id: str, count: int, start: int = 0) -> dict[str, Any]:
    """Store synthetic orders through the records service; returns them by order id."""
    auditor = Auditor(runtime.audit, Actor(channel=Channel.SYSTEM, source_ip="local"))
    raw = {order["AmazonOrderId"]: order for order in synthetic_orders(count, start=start)}
    mapped = [map_order(validate_order(order)) for order in raw.values()]
    assert records.ingest(runtime, auditor, tenant_id, mapped).inserted == count
    return raw


def reveal(runtime: Runtime, tenant_id: str, amazon_order_id: str) -> dict[str, Any]:
    auditor = Auditor(runtime.audit, Actor(channel=Channel.SYSTEM, source_ip="local"))
    return runtime.store.call(records.reveal, runtime, auditor, tenant_id, amazon_order_id,
                              "fulfillment")


def search(runtime: Runtime, tenant_id: str, email: str) -> list[dict[str, Any]]:
    auditor = Auditor(runtime.audit, Actor(channel=Channel.SYSTEM, source_ip="local"))
    return records.search(runtime, auditor, "acc_test", tenant_id, purpose="fulfillment",
                          buyer_email=email).orders


# -- tenant keys -----------------------------------------------------------------------------

def test_ensure_tenant_is_idempotent(runtime: Runtime) -> None:
    keyring = runtime.keyring
    with runtime.store.transaction() as session:
        keyring.ensure_tenant(session, ACME)
        keyring.ensure_tenant(session, ACME)
    first = tenant_keys(runtime)
    with runtime.store.transaction() as session:
        keyring.ensure_tenant(session, ACME)
    with runtime.store.transaction() as session:
        fresh_keyring(runtime).ensure_tenant(session, ACME)
    again = tenant_keys(runtime)
    assert set(first) == {(ACME, "kek", 1), (ACME, "index", 1)}
    assert set(again) == set(first)
    for name, row in again.items():
        assert row.wrapped == first[name].wrapped
        assert row.status == "active"
        assert row.root_version == keyring.provider.active_version()


def test_each_tenant_has_its_own_keys(runtime: Runtime) -> None:
    with runtime.store.transaction() as session:
        runtime.keyring.ensure_tenant(session, ACME)
        runtime.keyring.ensure_tenant(session, GLOBEX)
        acme = runtime.keyring.blind_index(session, ACME).digest(EMAIL, "a@example.test")
        globex = runtime.keyring.blind_index(session, GLOBEX).digest(EMAIL, "a@example.test")
    with runtime.store.transaction() as session:
        again = fresh_keyring(runtime).blind_index(session, ACME).digest(EMAIL, "a@example.test")
    assert acme != globex
    assert acme == again  # the index key survives a restart: stored digests stay searchable
    rows = tenant_keys(runtime)
    assert rows[(ACME, "kek", 1)].wrapped != rows[(GLOBEX, "kek", 1)].wrapped


def test_a_tenant_without_keys_gets_no_keys(runtime: Runtime) -> None:
    with runtime.store.transaction() as session:
        with pytest.raises(UnknownTenantKeyError):
            runtime.keyring.new_data_keys(session, "never-set-up", 1)
        with pytest.raises(UnknownTenantKeyError):
            runtime.keyring.blind_index(session, "never-set-up")


def test_wrapped_keys_are_not_the_keys(runtime: Runtime) -> None:
    with runtime.store.transaction() as session:
        secret = runtime.keyring.system_key(session, "test-secret")
    row = system_keys(runtime)["test-secret"]
    assert len(secret) == 32
    assert secret not in row.wrapped
    with runtime.store.transaction() as session:
        assert fresh_keyring(runtime).system_key(session, "test-secret") == secret


# -- data keys -------------------------------------------------------------------------------

def test_data_keys_round_trip(runtime: Runtime) -> None:
    with runtime.store.transaction() as session:
        runtime.keyring.ensure_tenant(session, ACME)
        created = runtime.keyring.new_data_keys(session, ACME, 3)
        assert runtime.keyring.new_data_keys(session, ACME, 0) == []
    sealed = seal_under(created)
    assert len(set(sealed)) == 3
    with runtime.store.transaction() as session:
        assert_same_keys(fresh_keyring(runtime).data_keys(session, ACME, list(sealed)), sealed)
        assert runtime.keyring.data_keys(session, ACME, []) == {}
    assert {row.kek_version for row in data_keys(runtime, ACME).values()} == {1}


def test_without_a_database_only_an_unwrapped_tenant_key_opens_data_keys(
        runtime: Runtime) -> None:
    """Code in the event loop must not block: it opens a data key with no database when the
    tenant key is already unwrapped in the process, and is told (``KeyNotCachedError``) when
    it is not, also when a destruction evicted it in between."""
    with runtime.store.transaction() as session:
        runtime.keyring.ensure_tenant(session, ACME)
        created = runtime.keyring.new_data_keys(session, ACME, 1)
    row = data_keys(runtime, ACME)[created[0].id]
    keyring = fresh_keyring(runtime)
    assert not keyring.has_kek(ACME, row.kek_version)
    with pytest.raises(KeyNotCachedError):
        keyring.open_data_key(None, ACME, row.id, row.kek_version, row.wrapped)
    with runtime.store.read() as db:
        keyring.open_data_key(db, ACME, row.id, row.kek_version, row.wrapped)
    assert keyring.has_kek(ACME, row.kek_version) and not keyring.has_kek(GLOBEX, 1)
    opened = keyring.open_data_key(None, ACME, row.id, row.kek_version, row.wrapped)
    assert_same_keys({row.id: opened}, seal_under(created))


def test_data_keys_of_one_tenant_are_never_returned_for_another(runtime: Runtime) -> None:
    keyring = runtime.keyring
    with runtime.store.transaction() as session:
        keyring.ensure_tenant(session, ACME)
        keyring.ensure_tenant(session, GLOBEX)
        acme = [key.id for key in keyring.new_data_keys(session, ACME, 2)]
        globex = [key.id for key in keyring.new_data_keys(session, GLOBEX, 1)]
    with runtime.store.transaction() as session:
        with pytest.raises(DataKeyDestroyedError):
            keyring.data_keys(session, GLOBEX, [acme[0]])
        with pytest.raises(DataKeyDestroyedError):  # never a partial answer either
            keyring.data_keys(session, GLOBEX, [globex[0], acme[0]])
        with pytest.raises(DataKeyDestroyedError):
            keyring.data_keys(session, ACME, [*acme, globex[0]])
        assert set(keyring.data_keys(session, ACME, acme)) == set(acme)
        assert set(keyring.data_keys(session, GLOBEX, globex)) == set(globex)


@pytest.mark.parametrize("target", [GLOBEX, ACME])
def test_a_wrapped_data_key_copied_to_another_row_does_not_unwrap(runtime: Runtime,
                                                                  target: str) -> None:
    """An attacker with write access to the database copies a wrapped data key to another
    tenant (or to another id of the same tenant): it is bound to its tenant and id."""
    keyring = runtime.keyring
    with runtime.store.transaction() as session:
        keyring.ensure_tenant(session, ACME)
        keyring.ensure_tenant(session, GLOBEX)
        original = keyring.new_data_keys(session, ACME, 1)[0]
    stolen = data_keys(runtime, ACME)[original.id]
    with runtime.store.transaction() as session:
        session.add(DataKey(id="copied" + original.id[6:], tenant_id=target,
                            kek_version=stolen.kek_version, wrapped=stolen.wrapped,
                            created_at=datetime.now(UTC)))
    with runtime.store.transaction() as session:
        with pytest.raises(DecryptionError):
            keyring.data_keys(session, target, ["copied" + original.id[6:]])
        assert set(keyring.data_keys(session, ACME, [original.id])) == {original.id}


def test_a_destroyed_data_key_raises(runtime: Runtime) -> None:
    keyring = runtime.keyring
    with runtime.store.transaction() as session:
        keyring.ensure_tenant(session, ACME)
        doomed, kept = keyring.new_data_keys(session, ACME, 2)
    with runtime.store.transaction() as session:
        session.execute(update(DataKey).where(DataKey.id == doomed.id)
                        .values(wrapped=None, destroyed_at=datetime.now(UTC)))
    for reader in (keyring, fresh_keyring(runtime)):
        with runtime.store.transaction() as session:
            with pytest.raises(DataKeyDestroyedError):
                reader.data_keys(session, ACME, [doomed.id])
            with pytest.raises(DataKeyDestroyedError):
                reader.data_keys(session, ACME, [kept.id, doomed.id])
            assert set(reader.data_keys(session, ACME, [kept.id])) == {kept.id}


def test_an_unknown_data_key_raises(runtime: Runtime) -> None:
    with runtime.store.transaction() as session:
        runtime.keyring.ensure_tenant(session, ACME)
        with pytest.raises(DataKeyDestroyedError):
            runtime.keyring.data_keys(session, ACME, ["0" * 32])


# -- rotation --------------------------------------------------------------------------------

def test_rotate_root_rewraps_tenant_and_system_keys(runtime: Runtime) -> None:
    keyring = runtime.keyring
    with runtime.store.transaction() as session:
        keyring.ensure_tenant(session, ACME)
        keyring.ensure_tenant(session, GLOBEX)
        sealed = seal_under(keyring.new_data_keys(session, ACME, 3))
        log_key = keyring.system_key(session, writing.LOG_KEY)
        digest = keyring.blind_index(session, ACME).digest(EMAIL, "a@example.test")
    tenants_before, systems_before = tenant_keys(runtime), system_keys(runtime)
    data_before = data_keys(runtime, ACME)
    old_root = keyring.provider.active_version()
    assert systems_before, "init creates the security-log key and others"

    with runtime.store.transaction() as session:
        new_root = keyring.rotate_root(session)
    assert new_root == old_root + 1 == keyring.provider.active_version()

    tenants_after, systems_after = tenant_keys(runtime), system_keys(runtime)
    assert set(tenants_after) == set(tenants_before)
    for name, row in tenants_after.items():
        assert row.root_version == new_root
        assert row.wrapped != tenants_before[name].wrapped
    assert set(systems_after) == set(systems_before)
    for system_name, system_row in systems_after.items():
        assert system_row.root_version == new_root
        assert system_row.wrapped != systems_before[system_name].wrapped
    data_after = data_keys(runtime, ACME)  # data keys hang off tenant keys: untouched
    assert {k: (r.kek_version, r.wrapped) for k, r in data_after.items()} == {
        k: (r.kek_version, r.wrapped) for k, r in data_before.items()}

    keyring.provider.retire_versions_before(new_root)
    restarted = fresh_keyring(runtime)
    with runtime.store.transaction() as session:
        assert_same_keys(restarted.data_keys(session, ACME, list(sealed)), sealed)
        assert restarted.system_key(session, writing.LOG_KEY) == log_key
        assert restarted.blind_index(session, ACME).digest(EMAIL, "a@example.test") == digest
    assert verification.verify(runtime.store, restarted).ok
    # The control: what rotation replaced is now unreadable.
    row = tenants_before[(ACME, "kek", 1)]
    with pytest.raises(DecryptionError):
        restarted.provider.unwrap(row.root_version, row.wrapped or b"",
                                  bind("tenant-key", ACME, "kek", 1))


def test_rotate_tenant_key_rewraps_data_keys(runtime: Runtime) -> None:
    acme_orders = ingest(runtime, ACME, 3)
    ingest(runtime, GLOBEX, 1, start=100)
    revealed = {order_id: reveal(runtime, ACME, order_id) for order_id in acme_orders}
    for order_id, view in revealed.items():  # the PII in clear, as it went in
        assert view["BuyerInfo"] == acme_orders[order_id]["BuyerInfo"]
        assert view["ShippingAddress"] == acme_orders[order_id]["ShippingAddress"]
    acme_before, globex_before = data_keys(runtime, ACME), data_keys(runtime, GLOBEX)
    tenants_before = tenant_keys(runtime)
    assert len(acme_before) == 3 + CANARIES

    with runtime.store.transaction() as session:
        assert runtime.keyring.rotate_tenant_key(session, ACME) == 2

    acme_after = data_keys(runtime, ACME)
    assert set(acme_after) == set(acme_before)  # same data key ids
    for key_id, row in acme_after.items():
        assert row.kek_version == 2
        assert row.wrapped != acme_before[key_id].wrapped
    globex_after = data_keys(runtime, GLOBEX)
    assert {k: (r.kek_version, r.wrapped) for k, r in globex_after.items()} == {
        k: (r.kek_version, r.wrapped) for k, r in globex_before.items()}

    tenants_after = tenant_keys(runtime)
    old, new = tenants_after[(ACME, "kek", 1)], tenants_after[(ACME, "kek", 2)]
    assert old.wrapped is None and old.status == "retired" and old.retired_at is not None
    assert new.wrapped is not None and new.status == "active"
    for unchanged in ((ACME, "index", 1), (GLOBEX, "kek", 1), (GLOBEX, "index", 1)):
        assert tenants_after[unchanged].wrapped == tenants_before[unchanged].wrapped
        assert tenants_after[unchanged].status == "active"

    for reader in (runtime, fresh_runtime(runtime)):
        for order_id, view in revealed.items():
            assert reveal(reader, ACME, order_id) == view

    # Orders stored after the rotation use the new tenant key; a second rotation still works.
    (later,) = ingest(runtime, ACME, 1, start=50)
    assert {row.kek_version for row in data_keys(runtime, ACME).values()} == {2}
    later_view = reveal(runtime, ACME, later)
    with runtime.store.transaction() as session:
        assert runtime.keyring.rotate_tenant_key(session, ACME) == 3
    restarted = fresh_runtime(runtime)
    for order_id, view in {**revealed, later: later_view}.items():
        assert reveal(restarted, ACME, order_id) == view


def test_the_old_tenant_key_is_gone_after_rotation(runtime: Runtime) -> None:
    """A copy of a data key wrapped under the retired tenant key (say, from a backup) can no
    longer be unwrapped: that tenant key no longer exists in any form."""
    with runtime.store.transaction() as session:
        runtime.keyring.ensure_tenant(session, ACME)
        created = runtime.keyring.new_data_keys(session, ACME, 1)
    backup = data_keys(runtime, ACME)[created[0].id]
    with runtime.store.transaction() as session:
        runtime.keyring.rotate_tenant_key(session, ACME)
    with runtime.store.transaction() as session:
        session.execute(update(DataKey).where(DataKey.id == backup.id)
                        .values(kek_version=backup.kek_version, wrapped=backup.wrapped))
    with runtime.store.transaction() as session, pytest.raises(UnknownTenantKeyError):
        fresh_keyring(runtime).data_keys(session, ACME, [backup.id])


# -- rotation while ingest runs --------------------------------------------------------------

def test_rotation_while_ingest_runs_loses_no_order(runtime: Runtime) -> None:
    """The reported loss (PostgreSQL, READ COMMITTED): ingests running in other connections
    read the still-active old tenant key version while a rotation re-wrapped, wrapped their
    data keys under it, and the rotation then destroyed it; those orders revealed only while
    the old key stayed cached, and after a restart never again. Now rotation and ingest take
    the tenant's key lock (exclusive / shared): after rotating under continuous ingest and a
    restart, every order reveals, and every retired tenant key is referenced by none."""
    import threading

    ingest(runtime, ACME, 1500)  # enough data keys that the rotation takes a while
    stop = threading.Event()
    stored: list[str] = []
    failures: list[BaseException] = []

    def keep_ingesting(worker: int) -> None:
        start = 100_000 * (worker + 1)
        try:
            while not stop.is_set():
                stored.extend(ingest(runtime, ACME, 3, start=start))
                start += 3
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    workers = [threading.Thread(target=keep_ingesting, args=(n,)) for n in range(2)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(2):
            with runtime.store.transaction() as session:
                runtime.keyring.rotate_tenant_key(session, ACME)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    assert not failures, failures
    assert stored  # ingest did run alongside

    restarted = fresh_runtime(runtime)  # nothing cached: only what the database holds
    keys = data_keys(runtime, ACME)
    with runtime.store.transaction() as session:
        assert len(restarted.keyring.data_keys(session, ACME, list(keys))) == len(keys)
    for order_id in stored:
        assert reveal(restarted, ACME, order_id)["BuyerInfo"]
    live_versions = {row.kek_version for row in keys.values()}
    for (tenant, purpose, version), row in tenant_keys(runtime).items():
        if tenant == ACME and purpose == "kek" and version in live_versions:
            assert row.wrapped is not None


def test_rotation_never_destroys_a_tenant_key_a_data_key_still_uses(runtime: Runtime) -> None:
    """The second guard, shown on its own: a data key wrapped under the old version appears
    while the rotation is re-wrapping (a database trigger writes it, as the race did), after
    the rotation read the keys to re-wrap. The old version is retired but kept, so that key
    still opens after a restart; the next rotation re-wraps it and then destroys the
    version."""
    with runtime.store.transaction() as session:
        runtime.keyring.ensure_tenant(session, ACME)
        first, straggler = runtime.keyring.new_data_keys(session, ACME, 2)
    sealed = seal_under([straggler])
    postgres = runtime.store.dialect == "postgresql"
    with runtime.store.engine.begin() as connection:
        connection.execute(text("CREATE TABLE straggler AS SELECT * FROM data_keys "
                                "WHERE id = :id"), {"id": straggler.id})
        connection.execute(text("DELETE FROM data_keys WHERE id = :id"), {"id": straggler.id})
        reinsert = ("INSERT INTO data_keys SELECT * FROM straggler WHERE NOT EXISTS "
                    "(SELECT 1 FROM data_keys WHERE data_keys.id = straggler.id)")
        if postgres:
            connection.execute(text(f"CREATE FUNCTION straggle() RETURNS trigger AS $$ BEGIN "
                                    f"{reinsert}; RETURN NEW; END $$ LANGUAGE plpgsql"))
            connection.execute(text("CREATE TRIGGER straggle AFTER UPDATE ON data_keys "
                                    "FOR EACH ROW EXECUTE FUNCTION straggle()"))
        else:
            connection.execute(text(f"CREATE TRIGGER straggle AFTER UPDATE ON data_keys "
                                    f"BEGIN {reinsert}; END"))
    with runtime.store.transaction() as session:
        assert runtime.keyring.rotate_tenant_key(session, ACME) == 2
    assert {key: row.kek_version for key, row in data_keys(runtime, ACME).items()} == {
        first.id: 2, straggler.id: 1}
    version_1 = tenant_keys(runtime)[(ACME, "kek", 1)]
    assert version_1.status == "retired" and version_1.wrapped is not None
    with runtime.store.transaction() as session:
        assert_same_keys(fresh_keyring(runtime).data_keys(session, ACME, [straggler.id]),
                         sealed)

    with runtime.store.engine.begin() as connection:
        connection.execute(text("DROP TRIGGER straggle" + (" ON data_keys" if postgres
                                                           else "")))
    with runtime.store.transaction() as session:
        assert runtime.keyring.rotate_tenant_key(session, ACME) == 3
    assert tenant_keys(runtime)[(ACME, "kek", 1)].wrapped is None
    with runtime.store.transaction() as session:
        assert_same_keys(fresh_keyring(runtime).data_keys(session, ACME, [straggler.id]),
                         sealed)


def test_two_first_ingests_of_a_new_tenant_both_succeed(runtime: Runtime) -> None:
    """Both see a tenant without keys and both create version 1: the second insert adds
    nothing (before: a primary-key violation, a 500 for one of the two ingests)."""
    import threading

    barrier = threading.Barrier(2)
    results: list[Any] = []

    def first_ingest(start: int) -> None:
        barrier.wait()
        try:
            results.append(ingest(runtime, "newcomer", 2, start=start))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=first_ingest, args=(n * 10,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 2 and all(isinstance(r, dict) for r in results), results
    assert {key for key in tenant_keys(runtime) if key[0] == "newcomer"} == {
        ("newcomer", "kek", 1), ("newcomer", "index", 1)}
    restarted = fresh_runtime(runtime)
    for order_id in {**results[0], **results[1]}:
        assert reveal(restarted, "newcomer", order_id)["BuyerInfo"]


# -- time ------------------------------------------------------------------------------------

def test_the_keyring_reads_the_time_from_its_clock(runtime: Runtime) -> None:
    """Every time kept with a key (made, retired, destroyed) is the runtime clock's."""
    clock = ManualClock(datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC))
    keyring = Keyring(LocalKeyProvider(runtime.settings.root_key_file), clock)
    made = clock.now()
    with runtime.store.transaction() as session:
        keyring.ensure_tenant(session, ACME)
        (first,) = keyring.new_data_keys(session, ACME, 1)
        keyring.system_key(session, "test-secret")
    rotated = clock.advance(timedelta(days=30))
    with runtime.store.transaction() as session:
        keyring.rotate_tenant_key(session, ACME)
    destroyed = clock.advance(timedelta(days=30))
    assert data_keys(runtime, ACME)[first.id].created_at == made
    assert system_keys(runtime)["test-secret"].created_at == made
    with runtime.store.transaction() as session:
        keyring.destroy_tenant_keys(session, ACME)
    times = {(purpose, version): (row.created_at, row.retired_at)
             for (_, purpose, version), row in tenant_keys(runtime).items()}
    assert times == {("kek", 1): (made, rotated), ("kek", 2): (rotated, destroyed),
                     ("index", 1): (made, destroyed)}


# -- destruction -----------------------------------------------------------------------------

def order_key_ids(runtime: Runtime, tenant_id: str, amazon_ids: Iterable[str]) -> list[str]:
    with runtime.store.transaction() as session:
        return list(session.scalars(select(Order.data_key_id).where(
            Order.tenant_id == tenant_id, Order.amazon_order_id.in_(list(amazon_ids)))))


def resend(runtime: Runtime, tenant_id: str, orders: Iterable[dict[str, Any]]) -> None:
    auditor = Auditor(runtime.audit, Actor(channel=Channel.SYSTEM, source_ip="local"))
    records.ingest(runtime, auditor, tenant_id,
                   [map_order(validate_order(order)) for order in orders])


def test_destroyed_data_keys_erase_their_orders_even_with_the_caches_warm(
        runtime: Runtime) -> None:
    acme = ingest(runtime, ACME, 3)
    globex = ingest(runtime, GLOBEX, 1, start=100)
    views = {order_id: reveal(runtime, ACME, order_id) for order_id in acme}  # caches warm
    doomed, kept = list(acme)[:2], list(acme)[2]
    doomed_keys = order_key_ids(runtime, ACME, doomed)
    (globex_key,) = order_key_ids(runtime, GLOBEX, globex)

    with runtime.store.transaction() as session:
        destroyed = runtime.keyring.destroy_data_keys(session, ACME, [*doomed_keys, globex_key])
    assert destroyed == DestroyedKeys(data_keys=2, tenant_keys=0)  # not another tenant's

    for reader in (runtime, fresh_runtime(runtime)):
        for order_id in doomed:
            with pytest.raises(OrderErasedError):
                reveal(reader, ACME, order_id)
        assert reveal(reader, ACME, kept) == views[kept]
        assert reveal(reader, GLOBEX, next(iter(globex)))["BuyerInfo"]
        with reader.store.transaction() as session, pytest.raises(DataKeyDestroyedError):
            reader.keyring.data_keys(session, ACME, doomed_keys[:1])
    with pytest.raises(OrderErasedError):  # re-sending an erased order makes no key again
        resend(runtime, ACME, [acme[doomed[0]]])
    remaining = set(data_keys(runtime, ACME))  # the kept order's, and the canaries'
    assert set(order_key_ids(runtime, ACME, [kept])) <= remaining
    assert len(remaining) == 1 + CANARIES and not remaining & set(doomed_keys)
    with runtime.store.transaction() as session:  # destroying twice is harmless
        assert runtime.keyring.destroy_data_keys(session, ACME, doomed_keys) == DestroyedKeys(
            data_keys=0, tenant_keys=0)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # (event loop: PG)
def test_a_destroyed_data_key_is_erased_in_the_event_loop_too(runtime: Runtime) -> None:
    """The server's hot path on PostgreSQL opens a data key without a database once the
    tenant key is unwrapped (``has_kek``): it still finds the data key gone."""
    (order_id,) = ingest(runtime, ACME, 1)
    auditor = Auditor(runtime.audit, Actor(channel=Channel.SYSTEM, source_ip="local"))

    async def reveal_async() -> dict[str, Any]:
        return await records.reveal(runtime, auditor, ACME, order_id, "fulfillment")

    assert in_event_loop(runtime, reveal_async)["BuyerInfo"]
    assert runtime.keyring.has_kek(ACME, 1)
    with runtime.store.transaction() as session:
        runtime.keyring.destroy_data_keys(session, ACME, order_key_ids(runtime, ACME,
                                                                       [order_id]))
    with pytest.raises(OrderErasedError):
        in_event_loop(runtime, reveal_async)


def test_a_destroyed_tenant_is_erased_and_its_keys_leave_the_process(runtime: Runtime) -> None:
    acme = ingest(runtime, ACME, 3)
    globex = ingest(runtime, GLOBEX, 1, start=100)
    with runtime.store.transaction() as session:
        runtime.keyring.rotate_tenant_key(session, ACME)  # a retired version, destroyed already
    email = acme[next(iter(acme))]["BuyerInfo"]["BuyerEmail"]
    for order_id in acme:
        reveal(runtime, ACME, order_id)
    assert search(runtime, ACME, email)  # the index key is unwrapped too
    assert runtime.keyring.holds_keys_of(ACME)
    copies = data_keys(runtime, ACME)

    with runtime.store.transaction() as session:
        destroyed = runtime.keyring.destroy_tenant_keys(session, ACME)
    assert destroyed == DestroyedKeys(data_keys=3 + CANARIES, tenant_keys=2)  # kek 2, index 1
    assert not runtime.keyring.holds_keys_of(ACME)
    assert not runtime.keyring.has_kek(ACME, 2)

    rows = {key: row for key, row in tenant_keys(runtime).items() if key[0] == ACME}
    assert set(rows) == {(ACME, "kek", 1), (ACME, "kek", 2), (ACME, "index", 1)}
    assert all(row.wrapped is None and row.status == "destroyed" for row in rows.values())
    assert data_keys(runtime, ACME) == {}
    for reader in (runtime, fresh_runtime(runtime)):
        for order_id in acme:
            with pytest.raises(OrderErasedError):
                reveal(reader, ACME, order_id)
        assert search(reader, ACME, email) == []
        with reader.store.transaction() as session:
            with pytest.raises(UnknownTenantKeyError):
                reader.keyring.blind_index(session, ACME)
            with pytest.raises(UnknownTenantKeyError):
                reader.keyring.new_data_keys(session, ACME, 1)
            with pytest.raises(UnknownTenantKeyError):
                reader.keyring.rotate_tenant_key(session, ACME)
        for copy in copies.values():  # a key read just before (or from a backup)
            with reader.store.read() as db, pytest.raises(DataKeyDestroyedError):
                reader.keyring.open_data_key(db, ACME, copy.id, copy.kek_version, copy.wrapped)
    with pytest.raises(TenantKeysDestroyedError):  # no new keys under an erased tenant's name
        ingest(runtime, ACME, 1, start=50)
    assert {key for key in tenant_keys(runtime) if key[0] == ACME} == set(rows)
    assert data_keys(runtime, ACME) == {}

    assert reveal(runtime, GLOBEX, next(iter(globex)))["BuyerInfo"]  # others untouched
    assert runtime.keyring.holds_keys_of(GLOBEX)
    with runtime.store.transaction() as session:  # destroying twice is harmless
        assert runtime.keyring.destroy_tenant_keys(session, ACME) == DestroyedKeys(0, 0)
        runtime.keyring.rotate_root(session)  # and root rotation passes the remains by
    assert {key: row.wrapped for key, row in tenant_keys(runtime).items()
            if key[0] == ACME} == dict.fromkeys(rows)


class PausingKeyStore(SqlKeyStore):
    """The SQL key store, stopping once, right after ``method`` ran, until released: to
    put another transaction at an exact point of the one using it (the database is real)."""

    def __init__(self, method: str) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        original = getattr(super(), method)

        def paused(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if not self.reached.is_set():
                self.reached.set()
                assert self.release.wait(timeout=30), "never released"
            return result

        setattr(self, method, paused)


def with_keys_in(runtime: Runtime, store: SqlKeyStore) -> Runtime:
    keyring = Keyring(LocalKeyProvider(runtime.settings.root_key_file), runtime.clock, store)
    return Runtime(runtime.settings, runtime.store, keyring, runtime.clock)


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """``work()`` started in a thread; its result or exception lands in the list."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_key_read_just_before_its_destruction_commits_is_not_cached_after(
        runtime: Runtime) -> None:
    """A reveal reads the tenant key, the destruction commits and evicts, then the reveal
    (which read the key in time, so it may finish) would cache the key: it must not."""
    (order_id,) = ingest(runtime, ACME, 1)
    (key_id,) = order_key_ids(runtime, ACME, [order_id])
    row = data_keys(runtime, ACME)[key_id]
    store = PausingKeyStore("tenant_key")
    paused = with_keys_in(runtime, store)

    def open_key() -> Any:
        with runtime.store.read() as db:
            return paused.keyring.open_data_key(db, ACME, key_id, row.kek_version, row.wrapped)

    thread, outcome = in_thread(open_key)
    assert store.reached.wait(timeout=30)
    with runtime.store.transaction() as session:
        paused.keyring.destroy_tenant_keys(session, ACME)
    store.release.set()
    thread.join(timeout=30)
    assert len(outcome) == 1 and not isinstance(outcome[0], BaseException), outcome
    assert not paused.keyring.holds_keys_of(ACME)


def test_a_key_read_before_the_destruction_commits_is_evicted_when_it_commits(
        runtime: Runtime) -> None:
    """Until the destruction commits, other transactions still read the tenant's keys (and
    a reveal caches them): the commit evicts them again."""
    (order_id,) = ingest(runtime, ACME, 1)
    (key_id,) = order_key_ids(runtime, ACME, [order_id])
    row = data_keys(runtime, ACME)[key_id]
    keyring = fresh_keyring(runtime)
    with runtime.store.transaction() as session:
        keyring.destroy_tenant_keys(session, ACME)
        with runtime.store.read() as db:  # another connection: the keys are still there
            keyring.open_data_key(db, ACME, key_id, row.kek_version, row.wrapped)
        assert keyring.holds_keys_of(ACME)
    assert not keyring.holds_keys_of(ACME)


def test_an_ingest_in_flight_when_its_tenant_is_destroyed_loses_its_keys_too(
        runtime: Runtime) -> None:
    """The ingest has stored its data keys but not committed; the destruction waits for it
    (PostgreSQL: the tenant's lock; SQLite: the writer's turn), then destroys them too."""
    ingest(runtime, ACME, 1)
    store = PausingKeyStore("add_data_keys")
    paused = with_keys_in(runtime, store)
    ingesting, ingested = in_thread(lambda: ingest(paused, ACME, 2, start=10))
    assert store.reached.wait(timeout=30)

    def destroy() -> DestroyedKeys:
        with runtime.store.transaction() as session:
            return runtime.keyring.destroy_tenant_keys(session, ACME)

    destroying, destroyed = in_thread(destroy)
    destroying.join(timeout=0.5)
    assert destroying.is_alive()  # waiting for the ingest
    store.release.set()
    ingesting.join(timeout=30)
    destroying.join(timeout=30)
    assert isinstance(ingested[0], dict), ingested
    assert destroyed == [DestroyedKeys(data_keys=3 + CANARIES, tenant_keys=2)]
    assert data_keys(runtime, ACME) == {}
    for order_id in ingested[0]:
        with pytest.raises(OrderErasedError):
            reveal(fresh_runtime(runtime), ACME, order_id)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # (SQLite: one writer)
def test_data_keys_destroyed_while_a_rotation_rewraps_stay_destroyed(runtime: Runtime) -> None:
    """The rotation has read the tenant's data keys; the destruction commits; the rotation
    then writes them re-wrapped: the destroyed ones are not made again, the others open."""
    acme = ingest(runtime, ACME, 4)
    doomed, kept = list(acme)[:2], list(acme)[2:]
    store = PausingKeyStore("live_data_keys")
    paused = with_keys_in(runtime, store)

    def rotate() -> int:
        with runtime.store.transaction() as session:
            return paused.keyring.rotate_tenant_key(session, ACME)

    rotating, rotated = in_thread(rotate)
    assert store.reached.wait(timeout=30)
    with runtime.store.transaction() as session:
        runtime.keyring.destroy_data_keys(session, ACME, order_key_ids(runtime, ACME, doomed))
    store.release.set()
    rotating.join(timeout=30)
    assert rotated == [2]
    assert {row.kek_version for row in data_keys(runtime, ACME).values()} == {2}
    remaining = set(data_keys(runtime, ACME))  # the kept orders' and the canaries'
    assert set(order_key_ids(runtime, ACME, kept)) <= remaining
    assert len(remaining) == len(kept) + CANARIES
    assert tenant_keys(runtime)[(ACME, "kek", 1)].wrapped is None  # nothing uses it now
    restarted = fresh_runtime(runtime)
    for order_id in doomed:
        with pytest.raises(OrderErasedError):
            reveal(restarted, ACME, order_id)
    for order_id in kept:
        assert reveal(restarted, ACME, order_id)["BuyerInfo"] == acme[order_id]["BuyerInfo"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_tenant_destroyed_while_reveals_and_ingests_run_is_destroyed_whole(
        runtime: Runtime) -> None:
    """Reveals and ingests of the tenant run on, in threads, through the destruction. After
    it: no data key or tenant key of the tenant is left or made again, nothing of it stays
    cached in the process, every order of it (those ingested during the race too) is
    erased, no reveal or ingest that started after the commit succeeded, and another
    tenant is untouched. (On SQLite the writers take turns: the ingest in flight is
    ``test_an_ingest_in_flight_when_its_tenant_is_destroyed_loses_its_keys_too``.)"""
    acme = list(ingest(runtime, ACME, 10))
    revealed = list(acme)
    (globex,) = ingest(runtime, GLOBEX, 1, start=500)
    committed = threading.Event()
    stop = threading.Event()
    rounds_after: dict[str, int] = {}
    wrong: list[str] = []
    started = threading.Barrier(5)  # four workers and the destruction
    ingesting = threading.Event()

    def attempt(name: str, work: Callable[[], object], refused: type[Exception]) -> None:
        """One reveal or ingest: refused once the destruction has committed, and never a
        success that started after it; anything else unexpected is noted too."""
        after = committed.is_set()
        try:
            work()
            if after:
                wrong.append(f"{name}: succeeded after the destruction")
        except refused:
            pass
        except Exception as exc:  # pragma: no cover - reported below
            wrong.append(f"{name}: {exc!r}")
        rounds_after[name] = rounds_after.get(name, 0) + after

    def keep_revealing(name: str) -> None:
        started.wait(timeout=30)
        while not stop.is_set():
            for order_id in revealed:
                attempt(name, partial(reveal, runtime, ACME, order_id), OrderErasedError)

    def ingest_more(start: int) -> None:
        acme.extend(ingest(runtime, ACME, 2, start=start))

    def keep_ingesting(name: str, start: int) -> None:
        started.wait(timeout=30)
        while not stop.is_set():
            attempt(name, partial(ingest_more, start), TenantKeysDestroyedError)
            ingesting.set()
            start += 2

    workers = [threading.Thread(target=keep_revealing, args=(name,)) for name in ("r1", "r2")]
    workers += [threading.Thread(target=keep_ingesting, args=(name, start))
                for name, start in (("i1", 100_000), ("i2", 200_000))]
    for worker in workers:
        worker.start()
    try:
        started.wait(timeout=30)
        assert ingesting.wait(timeout=30)  # the race is on
        with runtime.store.transaction() as session:
            destroyed = runtime.keyring.destroy_tenant_keys(session, ACME)
        committed.set()
        deadline = time.monotonic() + 30
        while (not wrong and time.monotonic() < deadline  # each runs on after the commit
               and (len(rounds_after) < 4 or min(rounds_after.values()) < 2)):
            stop.wait(0.01)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    assert wrong == []
    assert min(rounds_after.values()) >= 2, rounds_after

    with runtime.store.transaction() as session:
        stored = list(session.scalars(select(Order.amazon_order_id).where(
            Order.tenant_id == ACME)))
    assert destroyed.data_keys == len(stored) and destroyed.tenant_keys == 2
    assert set(acme) <= set(stored) and len(stored) > 10
    assert data_keys(runtime, ACME) == {}
    rows = [row for key, row in tenant_keys(runtime).items() if key[0] == ACME]
    assert len(rows) == 2 and all(row.wrapped is None for row in rows)
    assert not runtime.keyring.holds_keys_of(ACME)
    restarted = fresh_runtime(runtime)
    for order_id in stored:
        with pytest.raises(OrderErasedError):
            reveal(restarted, ACME, order_id)
    assert reveal(restarted, GLOBEX, globex)["BuyerInfo"]
