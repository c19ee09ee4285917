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
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text, update

from sellervault.audit import verification, writing
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel
from sellervault.crypto.aead import bind
from sellervault.crypto.errors import DecryptionError
from sellervault.crypto.keyring import (
    DataKeyDestroyedError,
    Keyring,
    NewDataKey,
    UnknownTenantKeyError,
)
from sellervault.crypto.models import DataKey, SystemKey, TenantKey
from sellervault.crypto.provider import LocalKeyProvider
from sellervault.records import service as records
from sellervault.records.spapi import map_order, validate_order
from sellervault.records.synthetic import synthetic_orders
from sellervault.runtime import Runtime
from sellervault.store.types import utcnow

ACME = "acme"
GLOBEX = "globex"
EMAIL = "buyer-email"


def fresh_keyring(runtime: Runtime) -> Keyring:
    """What a newly started process would build: nothing cached, the key file read again."""
    return Keyring(LocalKeyProvider(runtime.settings.root_key_file))


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
    """Code in the event loop must not block: it asks ``has_kek`` and, when the tenant key
    is already unwrapped in the process, opens a data key with no database at all."""
    with runtime.store.transaction() as session:
        runtime.keyring.ensure_tenant(session, ACME)
        created = runtime.keyring.new_data_keys(session, ACME, 1)
    row = data_keys(runtime, ACME)[created[0].id]
    keyring = fresh_keyring(runtime)
    assert not keyring.has_kek(ACME, row.kek_version)
    with pytest.raises(RuntimeError, match="pass a database"):
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
                            created_at=utcnow()))
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
                        .values(wrapped=None, destroyed_at=utcnow()))
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
    assert len(acme_before) == 3

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


def test_tenant_lock_ids_are_stable_and_distinct() -> None:
    from sellervault.crypto.keyring import tenant_lock_id

    assert tenant_lock_id(ACME) == tenant_lock_id(ACME)
    assert tenant_lock_id(ACME) != tenant_lock_id(GLOBEX)
    assert -(2**63) <= tenant_lock_id(ACME) < 2**63


def test_an_ingest_waits_for_a_rotation_only_so_long(runtime: Runtime,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """While a rotation holds a tenant's keys, an ingest of that tenant gives up after
    TENANT_LOCK_WAIT_MS (503, try again) instead of holding a worker thread for the whole
    rotation; nothing of it is written. Other tenants are not held up."""
    import time

    from sellervault.crypto import keyring as keyring_module
    from sellervault.crypto.errors import TenantKeysBusyError
    from sellervault.crypto.keyring import tenant_lock_id

    if runtime.store.dialect != "postgresql":
        pytest.skip("SQLite's writers take turns: there is no lock to wait on")
    monkeypatch.setattr(keyring_module, "TENANT_LOCK_WAIT_MS", 200)
    ingest(runtime, ACME, 1)
    before = len(data_keys(runtime, ACME))
    with runtime.store.engine.connect() as rotation:
        rotation.execute(select(text(f"pg_advisory_xact_lock({tenant_lock_id(ACME)})")))
        started = time.monotonic()
        with pytest.raises(TenantKeysBusyError):
            ingest(runtime, ACME, 1, start=10)
        assert time.monotonic() - started < 5
        ingest(runtime, GLOBEX, 1, start=20)  # another tenant goes on
        rotation.rollback()
    assert len(data_keys(runtime, ACME)) == before
    ingest(runtime, ACME, 1, start=10)  # and once the rotation is done, so does this one
