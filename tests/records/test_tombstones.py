"""records.tombstones: an order deleted on request is withheld when a re-sync sends it
again; the tombstone is a keyed digest, per tenant, never the marketplace id."""

from __future__ import annotations

from sqlalchemy import select

from sellervault.records import tombstones
from sellervault.records.models import ErasedOrder
from sellervault.runtime import Runtime
from tests.deletion.helpers import ingest

GONE, KEPT = "902-0000000-0000001", "902-0000000-0000002"


def test_a_buried_order_is_withheld_in_its_tenant_only(runtime: Runtime) -> None:
    ingest(runtime, "acme", 1)
    ingest(runtime, "globex", 1)
    now = runtime.clock.now()
    with runtime.store.transaction() as session:
        acme = runtime.keyring.blind_index(session, "acme")
        globex = runtime.keyring.blind_index(session, "globex")
        tombstones.bury(session, "acme", tombstones.digests(acme, [GONE]), now)
        tombstones.bury(session, "acme", tombstones.digests(acme, [GONE]), now)  # (again)
        assert tombstones.withheld(session, acme, "acme", [GONE, KEPT]) == {GONE}
        assert tombstones.withheld(session, globex, "globex", [GONE, KEPT]) == set()
        assert tombstones.withheld(session, acme, "acme", []) == set()
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
