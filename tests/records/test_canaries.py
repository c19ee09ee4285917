"""records.canaries: every tenant's honeytoken orders, seeded once at its first ingest, kept
recent by a daily job, shaped like real orders and known only to whoever holds the key."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.records import service as records
from sellervault.records.canaries import CITIES, canary_order, tenant_seed
from sellervault.records.models import Order
from sellervault.records.spapi import ORDER_ID_PATTERN, map_order, validate_order
from sellervault.records.synthetic import synthetic_orders
from sellervault.runtime import Runtime

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
SEED = tenant_seed(bytes(32), "acme")


def _auditor(runtime: Runtime) -> Auditor:
    return Auditor(runtime.audit, Actor(Channel.API, actor_id="acc_ingest"))


def _ingest(runtime: Runtime, tenant: str, count: int = 2, start: int = 0) -> int:
    orders = [map_order(validate_order(o)) for o in synthetic_orders(count, start=start)]
    return records.ingest(runtime, _auditor(runtime), tenant, orders).inserted


def _canaries(runtime: Runtime, tenant: str) -> list[Order]:
    with runtime.store.transaction() as session:
        found = session.scalars(select(Order).where(Order.tenant_id == tenant,
                                                    Order.is_canary.is_(True)))
        return sorted(found, key=lambda order: order.amazon_order_id)


# -- what a canary looks like ------------------------------------------------------------------

def test_a_canary_is_the_same_order_each_time_its_dates_follow_now() -> None:
    first, again = canary_order(SEED, 0, NOW), canary_order(SEED, 0, NOW + timedelta(days=9))
    for field in ("AmazonOrderId", "BuyerInfo", "ShippingAddress", "OrderTotal"):
        assert first[field] == again[field]
    assert first["PurchaseDate"] != again["PurchaseDate"]
    for order, now in ((first, NOW), (again, NOW + timedelta(days=9))):
        purchased = datetime.fromisoformat(order["PurchaseDate"].replace("Z", "+00:00"))
        assert timedelta(days=1) <= now - purchased < timedelta(days=7)


def test_each_number_and_each_tenant_has_its_own_canary() -> None:
    ids = {canary_order(SEED, number, NOW)["AmazonOrderId"] for number in range(20)}
    assert len(ids) == 20
    other = tenant_seed(bytes(32), "globex")
    assert canary_order(other, 0, NOW)["AmazonOrderId"] not in ids
    assert canary_order(tenant_seed(bytes(range(32)), "acme"), 0, NOW)["AmazonOrderId"] \
        not in ids  # another key: unrelated canaries


@pytest.mark.parametrize("number", range(12))
def test_a_canary_has_the_shape_of_a_real_marketplace_order(number: int) -> None:
    order = canary_order(SEED, number, NOW)
    mapped = map_order(validate_order(order))  # what ingest accepts
    assert re.fullmatch(r"\d{3}-\d{7}-\d{7}", order["AmazonOrderId"])
    assert re.fullmatch(ORDER_ID_PATTERN, mapped.amazon_order_id)
    assert re.fullmatch(r"[a-z0-9]{15}@marketplace\.amazon\.com",
                        order["BuyerInfo"]["BuyerEmail"])
    address = order["ShippingAddress"]
    assert (address["City"], address["StateOrRegion"], address["PostalCode"]) in {
        city[:3] for city in CITIES}
    assert "example" not in repr(order) and "555-" not in repr(order)


# -- seeding at the first ingest, once -------------------------------------------------------

def test_a_tenants_first_ingest_seeds_its_canaries_and_answers_for_its_own_orders(
        runtime: Runtime) -> None:
    assert _ingest(runtime, "acme", 2) == 2
    first = _canaries(runtime, "acme")
    assert len(first) == runtime.settings.canaries_per_tenant
    assert _ingest(runtime, "acme", 2, start=10) == 2  # a later ingest seeds nothing
    assert [c.id for c in _canaries(runtime, "acme")] == [c.id for c in first]
    assert records.list_canaries(runtime, _auditor(runtime), "acme") == [
        c.amazon_order_id for c in first]
    assert _canaries(runtime, "globex") == []
    with runtime.store.transaction() as session:
        seeded = session.scalars(select(EventRow).where(
            EventRow.action.in_(["canaries:refresh", "keys:create-tenant"]))).all()
    assert [(e.action, e.tenant_id, e.count, e.channel) for e in seeded] == [
        ("keys:create-tenant", "acme", None, "system"),
        ("canaries:refresh", "acme", runtime.settings.canaries_per_tenant, "system")]


def test_two_first_ingests_at_once_seed_the_canaries_once(runtime: Runtime) -> None:
    """Both transactions see a tenant without keys; one creates them (and the canaries),
    the other waits for it and then finds them (``Keyring.ensure_tenant``)."""
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def first_ingest(start: int) -> None:
        barrier.wait()
        try:
            _ingest(runtime, "initech", 1, start=start)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_ingest, args=(i * 10,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(_canaries(runtime, "initech")) == runtime.settings.canaries_per_tenant
    with runtime.store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Order).where(
            Order.tenant_id == "initech", Order.is_canary.is_(False))) == 4
        seeded = session.scalar(select(func.count()).select_from(EventRow).where(
            EventRow.action == "canaries:refresh", EventRow.tenant_id == "initech"))
    assert seeded == 1  # one transaction created the tenant, and seeded it


def test_a_canary_reads_like_any_order(runtime: Runtime) -> None:
    """The masked view of a canary has the fields of an ordinary order of the same shape;
    nothing in it says canary."""
    _ingest(runtime, "acme", 1)
    canary = _canaries(runtime, "acme")[0]
    lookalike = canary_order(tenant_seed(bytes(32), "somewhere-else"), 0, NOW)
    records.ingest(runtime, _auditor(runtime), "acme", [map_order(validate_order(lookalike))])
    read = [runtime.store.call(records.read_masked, runtime, _auditor(runtime), "acme", order_id)
            for order_id in (canary.amazon_order_id, lookalike["AmazonOrderId"])]
    assert _shape(read[0]) == _shape(read[1])
    assert "canary" not in repr(read[0]).lower()


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()
                if key not in ("IsPrime", "NumberOfItemsShipped", "NumberOfItemsUnshipped")}
    return type(value).__name__


# -- the daily refresh ---------------------------------------------------------------------------

def test_the_refresh_moves_the_dates_forward_and_keeps_the_canaries(
        runtime: Runtime, clock: ManualClock) -> None:
    _ingest(runtime, "acme", 1)
    before = {c.amazon_order_id: c.purchase_date for c in _canaries(runtime, "acme")}
    clock.advance(timedelta(days=30))
    assert records.refresh_canaries(runtime) == len(before)
    after = {c.amazon_order_id: c.purchase_date for c in _canaries(runtime, "acme")}
    assert set(after) == set(before)
    now = clock.now()
    for order_id, purchased in after.items():
        moment = purchased if purchased.tzinfo else purchased.replace(tzinfo=UTC)
        assert timedelta(days=1) <= now - moment < timedelta(days=7), order_id
        assert purchased > before[order_id]


def test_the_refresh_seeds_a_tenant_without_canaries_and_leaves_an_erased_one(
        runtime: Runtime) -> None:
    orders = [map_order(validate_order(o)) for o in synthetic_orders(1)]
    with runtime.store.transaction() as session:  # a tenant from before canaries existed
        records.store_orders(session, runtime.keyring, "legacy", orders, runtime.clock.now())
    _ingest(runtime, "erased", 1, start=50)
    with runtime.store.transaction() as session:
        runtime.keyring.destroy_tenant_keys(session, "erased")
    assert records.refresh_canaries(runtime) == runtime.settings.canaries_per_tenant
    assert len(_canaries(runtime, "legacy")) == runtime.settings.canaries_per_tenant


def test_without_the_key_nobody_can_tell_the_canaries(runtime: Runtime) -> None:
    """The canaries of a tenant follow from the canary-seed key, which is wrapped by the root
    key like every system key: another vault (another key) makes other ones."""
    _ingest(runtime, "acme", 1)
    stored = {c.amazon_order_id for c in _canaries(runtime, "acme")}
    with runtime.store.read() as db:
        key = runtime.keyring.system_key(db, "canary-seed")
    assert {canary_order(tenant_seed(key, "acme"), n, NOW)["AmazonOrderId"]
            for n in range(len(stored))} == stored
    guessed = {canary_order(tenant_seed(bytes(32), "acme"), n, NOW)["AmazonOrderId"]
               for n in range(len(stored))}
    assert not guessed & stored
