"""The records side of an erasure: which orders a scope holds, found a batch at a time."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from sellervault.records import erasure
from sellervault.records.models import Order
from sellervault.runtime import Runtime
from tests.deletion.helpers import BUYER_EMAIL, ingest


def test_batches_walk_the_scope_in_marketplace_id_order_each_once(runtime: Runtime) -> None:
    ingest(runtime, "acme", 5)
    ingest(runtime, "globex", 2, start=50)
    canaries = runtime.settings.canaries_per_tenant
    scope = erasure.Scope("acme")
    seen: list[str] = []
    cursors: list[str] = []
    with runtime.store.transaction() as session:
        batch = erasure.next_batch(session, scope, None, limit=2)
        while batch.orders:
            assert len(batch.orders) <= 2
            assert {order.tenant_id for order in batch.orders} == {"acme"}
            seen += [order.id for order in batch.orders]
            assert batch.after is not None
            cursors.append(batch.after)
            batch = erasure.next_batch(session, scope, batch.after, limit=2)
        assert batch.after == cursors[-1]  # (the end: the cursor stays where it was)
    assert len(seen) == len(set(seen)) == 5 + canaries  # every order of it, each once
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    assert _marketplace_ids(runtime, seen)[-1] == cursors[-1]


def test_a_buyer_scope_holds_only_that_buyers_orders(runtime: Runtime) -> None:
    ingest(runtime, "acme", 3, buyer_email=BUYER_EMAIL)
    ingest(runtime, "acme", 4, start=10)
    with runtime.store.transaction() as session:
        buyer = _buyer(runtime, session)
        batch = erasure.next_batch(session, erasure.Scope("acme", email_digest=buyer.digest),
                                   None, limit=100)
    assert len(batch.orders) == 3


def test_holds_more_than_answers_without_counting_everything(runtime: Runtime) -> None:
    ingest(runtime, "acme", 3, buyer_email=BUYER_EMAIL)
    with runtime.store.transaction() as session:
        buyer = _buyer(runtime, session)
        scope = erasure.Scope("acme", email_digest=buyer.digest)
        assert erasure.holds_more_than(session, scope, 2)
        assert not erasure.holds_more_than(session, scope, 3)
        assert not erasure.holds_more_than(session, erasure.Scope("nobody"), 0)


def test_retentions_writes_ask_for_the_hold_and_say_what_they_changed(
        runtime: Runtime) -> None:
    """Only what the write itself changed may lose its data key: a held order (its hold
    set after the orders were found) is left whole and not returned."""
    ingest(runtime, "acme", 3)
    now = runtime.clock.now()
    with runtime.store.transaction() as session:
        rows = session.execute(select(Order.id, Order.amazon_order_id).where(
            Order.tenant_id == "acme", Order.is_canary.is_(False)).order_by(Order.id)).all()
        ids = [row.id for row in rows]
        erasure.hold(session, "acme", rows[0].amazon_order_id, now + timedelta(days=1))
        erasure.hold(session, "acme", rows[1].amazon_order_id, now)  # (ended: not held)
        stripped = erasure.remove_pii_unless_held(session, ids, now)
        assert sorted(ref.id for ref in stripped) == ids[1:]
        assert erasure.remove_pii_unless_held(session, ids, now) == []  # (done already)
        deleted = erasure.delete_unless_held(session, ids, now)
        assert sorted(ref.id for ref in deleted) == ids[1:]
        kept = session.scalars(select(Order).where(Order.id.in_(ids))).all()
    assert [(o.id, o.pii_removed_at, o.buyer_ct is not None) for o in kept] == [
        (ids[0], None, True)]


def _buyer(runtime: Runtime, session: Session) -> erasure.Buyer:
    return erasure.buyer(session, runtime.keyring, runtime.keyring.buyer_pseudonyms(session),
                         "acme", BUYER_EMAIL)


def _marketplace_ids(runtime: Runtime, order_ids: list[str]) -> list[str]:
    with runtime.store.transaction() as session:
        return sorted(session.scalars(select(Order.amazon_order_id).where(
            Order.id.in_(order_ids))))
