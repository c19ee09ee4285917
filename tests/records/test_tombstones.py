"""records.tombstones: an order deleted on request is withheld when a re-sync sends it
again; the tombstone is a keyed digest, per tenant, never the marketplace id, and lasts as
long as the order would have."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from sellervault.records import tombstones
from sellervault.records.models import ErasedOrder
from sellervault.runtime import Runtime
from tests.deletion.helpers import ingest

GONE, KEPT = "902-0000000-0000001", "902-0000000-0000002"


def _bury(runtime: Runtime, tenant: str, order_id: str, lasts: timedelta) -> None:
    now = runtime.clock.now()
    with runtime.store.transaction() as session:
        [digest] = tombstones.digests(runtime.keyring.blind_index(session, tenant), [order_id])
        tombstones.bury(session, tenant, [tombstones.Tombstone(digest, now + lasts)], now)


def _withheld(runtime: Runtime, tenant: str, order_ids: list[str]) -> set[str]:
    with runtime.store.transaction() as session:
        return tombstones.withheld(session, runtime.keyring.blind_index(session, tenant),
                                   tenant, order_ids)


def test_a_buried_order_is_withheld_in_its_tenant_only(runtime: Runtime) -> None:
    ingest(runtime, "acme", 1)
    ingest(runtime, "globex", 1)
    _bury(runtime, "acme", GONE, timedelta(days=30))
    _bury(runtime, "acme", GONE, timedelta(days=30))  # (again: once)
    assert _withheld(runtime, "acme", [GONE, KEPT]) == {GONE}
    assert _withheld(runtime, "globex", [GONE, KEPT]) == set()
    assert _withheld(runtime, "acme", []) == set()
    with runtime.store.transaction() as session:
        rows = session.execute(select(ErasedOrder.tenant_id, ErasedOrder.order_digest)).all()
    assert len(rows) == 1 and rows[0].tenant_id == "acme"
    assert GONE.encode() not in rows[0].order_digest and len(rows[0].order_digest) == 32


def test_the_digest_is_the_tenants_own(runtime: Runtime) -> None:
    """Another tenant's index key gives another digest: a tombstone names nothing outside
    its tenant."""
    ingest(runtime, "acme", 1)
    ingest(runtime, "globex", 1)
    with runtime.store.transaction() as session:
        acme = runtime.keyring.blind_index(session, "acme")
        globex = runtime.keyring.blind_index(session, "globex")
        assert tombstones.digests(acme, [GONE]) != tombstones.digests(globex, [GONE])


def test_a_tombstone_goes_when_its_order_would_have_and_with_its_tenant(
        runtime: Runtime) -> None:
    ingest(runtime, "acme", 1)
    ingest(runtime, "globex", 1)
    _bury(runtime, "acme", GONE, timedelta(days=30))
    _bury(runtime, "acme", KEPT, timedelta(days=31))
    _bury(runtime, "globex", GONE, timedelta(days=300))
    with runtime.store.transaction() as session:
        assert tombstones.forget_expired(session, runtime.clock.now()) == 0
        assert tombstones.forget_expired(
            session, runtime.clock.now() + timedelta(days=30)) == 1
    assert _withheld(runtime, "acme", [GONE, KEPT]) == {KEPT}
    with runtime.store.transaction() as session:
        tombstones.forget_tenant(session, "acme")
    assert _withheld(runtime, "acme", [GONE, KEPT]) == set()
    assert _withheld(runtime, "globex", [GONE]) == {GONE}
