"""records.canaries: every tenant's honeytoken orders, seeded once at its first ingest,
modelled on its own orders without copying anything personal, kept recent by a daily job
that moves their dates alone, and known only to whoever holds the key."""

from __future__ import annotations

import json
import random
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
from sellervault.records.canaries import (
    CITIES,
    LOCALE_FIELDS,
    canary_order,
    choose_model,
    model_of,
    nearby,
    redate,
    tenant_seed,
)
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


def test_a_canary_reads_like_the_tenants_own_orders(runtime: Runtime) -> None:
    """The masked view of a canary has exactly the fields, nesting and value types of the
    order it was modelled on; nothing in it says canary."""
    orders = [map_order(validate_order(o)) for o in synthetic_orders(3)]
    records.ingest(runtime, _auditor(runtime), "acme", orders)
    with runtime.store.read() as db:
        seed = tenant_seed(runtime.keyring.system_key(db, "canary-seed"), "acme")
    models = [model_of(order) for order in orders]
    for number in range(runtime.settings.canaries_per_tenant):
        model = choose_model(seed, number, models)
        assert model is not None
        order_id = canary_order(seed, number, NOW, model)["AmazonOrderId"]
        read = [runtime.store.call(records.read_masked, runtime, _auditor(runtime), "acme", i)
                for i in (order_id, model["AmazonOrderId"])]
        assert _shape(read[0]) == _shape(read[1])
        assert "canary" not in repr(read[0]).lower()


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return type(value).__name__


# -- modelled on the tenant's orders, nothing personal copied ------------------------------

GERMAN_ORDER: dict[str, Any] = {
    "AmazonOrderId": "028-1234567-7654321", "SellerOrderId": "DE-2026-0042",
    "PurchaseDate": "2026-03-01T10:00:00Z", "LastUpdateDate": "2026-03-02T10:00:00.000Z",
    "OrderStatus": "Shipped", "MarketplaceId": "A1PA6795UKMFR9", "SalesChannel": "Amazon.de",
    "OrderTotal": {"CurrencyCode": "EUR", "Amount": "19.99"},
    "LatestDeliveryDate": "2026-03-05T23:59:59+01:00",
    "ShippingAddress": {"Name": "Max Mustermann", "AddressLine1": "Echtweg 5",
                        "AddressLine2": "Hinterhaus 3", "City": "Köln", "PostalCode": "50667",
                        "CountryCode": "DE", "Phone": "+49 221 9876543",
                        "AddressType": "Residential"},
    "BuyerInfo": {"BuyerEmail": "zx81spectrum4ab@marketplace.amazon.de",
                  "BuyerName": "Max Mustermann", "PurchaseOrderNumber": "PO-7731",
                  "BuyerTaxInfo": {"CompanyLegalName": "Mustermann Werkzeuge GmbH",
                                   "TaxingRegion": "NRW",
                                   "TaxClassifications": [{"Name": "VATNumber",
                                                           "Value": "DE987654321"}]}},
}


def _personal_values(order: dict[str, Any]) -> set[str]:
    """Every personal text of an order (its buyer and address records, but where it goes)."""
    found: set[str] = set()

    def walk(field: str, value: Any) -> None:
        if isinstance(value, dict):
            if "Name" in value and "Value" in value:
                walk("Value", value["Value"])
                return
            for key, item in value.items():
                walk(key, item)
        elif isinstance(value, list):
            for item in value:
                walk(field, item)
        elif isinstance(value, str) and field not in LOCALE_FIELDS:
            found.add(value)

    for key in ("BuyerInfo", "ShippingAddress", "BuyerTaxInformation", "GiftMessage"):
        if key in order:
            walk(key, order[key])
    return found


def test_a_canary_of_a_german_seller_is_a_german_order_with_a_made_up_buyer() -> None:
    canary = canary_order(SEED, 0, NOW, GERMAN_ORDER)
    mapped, model = map_order(validate_order(canary)), map_order(validate_order(GERMAN_ORDER))
    assert _shape(mapped.clear) == _shape(model.clear)  # what a masked reader sees
    assert list(canary) == list(GERMAN_ORDER)  # the fields in the model's order
    for field in ("MarketplaceId", "SalesChannel", "OrderTotal", "OrderStatus"):
        assert canary[field] == GERMAN_ORDER[field]
    address, buyer = canary["ShippingAddress"], canary["BuyerInfo"]
    assert {k: address[k] for k in ("City", "CountryCode")} == {
        "City": "Köln", "CountryCode": "DE"}
    assert re.fullmatch(r"506\d\d", address["PostalCode"])  # the same area of Cologne
    assert buyer["BuyerTaxInfo"]["TaxingRegion"] == "NRW"
    assert buyer["BuyerTaxInfo"]["TaxClassifications"][0]["Name"] == "VATNumber"
    assert re.fullmatch(r"DE\d{9}", buyer["BuyerTaxInfo"]["TaxClassifications"][0]["Value"])
    assert buyer["BuyerTaxInfo"]["CompanyLegalName"].endswith(" GmbH")
    assert re.fullmatch(r"[a-z0-9]{15}@marketplace\.amazon\.de", buyer["BuyerEmail"])
    assert re.fullmatch(r"\+49 \d{3} \d{7}", address["Phone"])
    assert address["Name"] == buyer["BuyerName"]  # one made-up person
    assert re.fullmatch(r"028-\d{7}-\d{7}", canary["AmazonOrderId"])
    assert re.fullmatch(r"DE-\d{4}-\d{4}", canary["SellerOrderId"])
    assert re.fullmatch(r"PO-\d{4}", buyer["PurchaseOrderNumber"])
    text = repr(canary)
    for personal in _personal_values(GERMAN_ORDER) | {"Mustermann", "Echtweg", "9876543"}:
        assert personal not in text, personal
    for reference in ("1234567-7654321", "2026-0042", "987654321"):
        assert reference not in text


def test_a_canary_modelled_on_each_marketplace_example_copies_nothing_personal(
        order_examples: list[dict[str, Any]]) -> None:
    with_buyer = [o for o in order_examples if "BuyerInfo" in o or "ShippingAddress" in o]
    assert with_buyer
    for number, example in enumerate(with_buyer):
        model = model_of(map_order(validate_order(example)))
        canary = canary_order(SEED, number, NOW, model)
        mapped = map_order(validate_order(canary))  # what ingest accepts
        assert _shape(mapped.clear) == _shape(map_order(validate_order(example)).clear)
        text = repr(canary)
        for personal in _personal_values(model):
            if len(personal) > 3:  # ("Yes", "1": values any order may hold)
                assert personal not in text, (example["AmazonOrderId"], personal)


def test_canaries_dated_in_one_run_do_not_share_its_seconds() -> None:
    """Each canary is dated its own age back from the run's moment, to the second: whole
    minutes gave every canary of a run the same seconds, a mark no real order set has."""
    seconds = {canary_order(SEED, n, NOW)["PurchaseDate"][17:19] for n in range(12)}
    assert len(seconds) > 3


def test_a_canary_keeps_its_models_seller_id_relation() -> None:
    """A seller whose ids are the marketplace's (SellerOrderId == AmazonOrderId) gets
    canaries that are the same; one with ids of its own gets new ones in its scheme."""
    same = {**GERMAN_ORDER, "SellerOrderId": GERMAN_ORDER["AmazonOrderId"]}
    canary = canary_order(SEED, 0, NOW, same)
    assert canary["SellerOrderId"] == canary["AmazonOrderId"] != same["AmazonOrderId"]
    own = {**GERMAN_ORDER, "SellerOrderId": "SO-2026-000417"}
    canary = canary_order(SEED, 0, NOW, own)
    assert canary["SellerOrderId"] not in (canary["AmazonOrderId"], own["SellerOrderId"])
    assert re.fullmatch(r"SO-\d{4}-\d{6}", canary["SellerOrderId"])


def test_the_model_is_an_order_with_a_buyer_chosen_by_the_seed() -> None:
    bare = {k: v for k, v in GERMAN_ORDER.items() if k not in ("BuyerInfo", "ShippingAddress")}
    assert choose_model(SEED, 0, [bare]) is None  # nothing to model a buyer on: stock canary
    assert choose_model(SEED, 0, [bare, GERMAN_ORDER]) is GERMAN_ORDER
    others = [{**GERMAN_ORDER, "AmazonOrderId": f"028-0000000-000000{i}"} for i in range(8)]
    chosen = {choose_model(SEED, n, others)["AmazonOrderId"] for n in range(40)}  # type: ignore[index]
    assert len(chosen) > 1  # the canaries spread over the tenant's orders
    assert choose_model(SEED, 3, others) is choose_model(SEED, 3, list(reversed(others)))


def test_a_last_update_is_never_in_the_future() -> None:
    """A model updated weeks after it was bought: its canary, bought days ago, was updated
    half-way between then and now, not weeks ahead."""
    late = {**GERMAN_ORDER, "LastUpdateDate": "2026-04-01T10:00:00Z"}
    canary = canary_order(SEED, 0, NOW, late)
    purchased = datetime.fromisoformat(canary["PurchaseDate"])
    updated = datetime.fromisoformat(canary["LastUpdateDate"])
    assert purchased < updated <= NOW
    assert abs((updated - purchased) - (NOW - updated)) <= timedelta(seconds=1)
    ordinary = canary_order(SEED, 0, NOW, GERMAN_ORDER)  # updated a day after: kept so
    assert datetime.fromisoformat(ordinary["LastUpdateDate"]) \
        - datetime.fromisoformat(ordinary["PurchaseDate"]) == timedelta(days=1)


def test_a_postal_code_keeps_its_area_and_makes_up_the_rest() -> None:
    made = {nearby(random.Random(n), "50667") for n in range(200)}
    assert all(re.fullmatch(r"506\d\d", code) for code in made) and len(made) > 50
    assert re.fullmatch(r"1000\d-12\d\d", nearby(random.Random(1), "10001-1234"))
    for short in ("SW1A 1AA", "D02", "1010"):  # too few digits to keep an area: kept whole
        assert nearby(random.Random(1), short) == short


def test_redate_moves_every_date_by_the_same_and_writes_each_as_it_was() -> None:
    moved = redate(GERMAN_ORDER, datetime(2026, 3, 11, 10, 0, tzinfo=UTC), NOW)
    assert moved["PurchaseDate"] == "2026-03-11T10:00:00Z"
    assert moved["LastUpdateDate"] == "2026-03-12T10:00:00.000Z"
    assert moved["LatestDeliveryDate"] == "2026-03-15T23:59:59+01:00"
    assert {k: v for k, v in moved.items() if "Date" not in k} == {
        k: v for k, v in GERMAN_ORDER.items() if "Date" not in k}


# -- the daily refresh ---------------------------------------------------------------------------

def test_the_refresh_moves_the_dates_forward_and_keeps_the_canaries(
        runtime: Runtime, clock: ManualClock) -> None:
    _ingest(runtime, "acme", 1)
    before = {c.amazon_order_id: c for c in _canaries(runtime, "acme")}
    clock.advance(timedelta(days=30))
    assert records.refresh_canaries(runtime) == len(before)
    after = {c.amazon_order_id: c for c in _canaries(runtime, "acme")}
    assert set(after) == set(before)
    now = clock.now()
    for order_id, canary in after.items():
        old = before[order_id]
        moment = _aware(canary.purchase_date)
        assert timedelta(days=1) <= now - moment < timedelta(days=7), order_id
        shift = moment - _aware(old.purchase_date)
        assert timedelta(days=29) < shift < timedelta(days=31)
        assert _aware(canary.last_update_date) - _aware(old.last_update_date) == shift
        # the sealed records, keys and ids stay; the clear attributes move by the same shift
        assert (canary.id, canary.buyer_ct, canary.address_ct, canary.data_key_id) == (
            old.id, old.buyer_ct, old.address_ct, old.data_key_id)
        assert json.loads(canary.attributes) == redate(json.loads(old.attributes), moment, now)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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


def test_a_tenant_whose_first_orders_have_no_buyer_gets_canaries_modelled_on_later_ones(
        runtime: Runtime) -> None:
    """Pending orders carry no buyer and no address: nothing to model a canary on. No
    made-up stock order (a US order on Amazon.com) is seeded among them; the daily refresh
    seeds the canaries once an order with a buyer has arrived, in its marketplace."""
    pending = [{k: v for k, v in o.items() if k not in ("BuyerInfo", "ShippingAddress")}
               for o in synthetic_orders(2, start=60)]
    records.ingest(runtime, _auditor(runtime), "pending",
                   [map_order(validate_order(o)) for o in pending])
    assert _canaries(runtime, "pending") == []
    assert records.refresh_canaries(runtime) == 0
    later = list(synthetic_orders(1, start=70))
    records.ingest(runtime, _auditor(runtime), "pending",
                   [map_order(validate_order(o)) for o in later])
    records.refresh_canaries(runtime)
    seeded = _canaries(runtime, "pending")
    assert len(seeded) == runtime.settings.canaries_per_tenant
    assert {json.loads(c.attributes)["MarketplaceId"] for c in seeded} == {
        later[0]["MarketplaceId"]}


def test_without_the_key_nobody_can_tell_the_canaries(runtime: Runtime) -> None:
    """The canaries of a tenant follow from the canary-seed key, which is wrapped by the root
    key like every system key: another vault (another key) makes other ones."""
    _ingest(runtime, "acme", 1)
    stored = {c.amazon_order_id for c in _canaries(runtime, "acme")}
    with runtime.store.read() as db:
        key = runtime.keyring.system_key(db, "canary-seed")
    models = [model_of(map_order(validate_order(o))) for o in synthetic_orders(1)]

    def ids(seed: bytes) -> set[str]:
        return {canary_order(seed, n, NOW, choose_model(seed, n, models))["AmazonOrderId"]
                for n in range(len(stored))}

    assert ids(tenant_seed(key, "acme")) == stored
    assert not ids(tenant_seed(bytes(32), "acme")) & stored
