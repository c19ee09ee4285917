"""Orders over HTTPS, from the owner's side and the attacker's: ingest, masked reads, reveals
with a purpose, search through the blind index, tenant isolation."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import select

from sellervault import bootstrap
from sellervault.audit.models import EventRow
from sellervault.records.models import Order
from sellervault.runtime import Runtime
from tests.support import Server, last_request_event, start_server

TENANT = "acme"
OTHER = "globex"


@pytest.fixture(scope="module")
def world(server: Server, order_examples: list[dict[str, Any]]) -> dict[str, Any]:
    """An ingest service, an analyst and a PII reader on TENANT, with the example orders in."""
    admin = server.admin_token()
    ingest_key = server.create_service(admin, "seller app ingest",
                                       [{"role": "ingest", "tenant": TENANT}])
    analyst, _ = server.create_person(admin, "ann.analyst@example.test", "Ann Analyst",
                                      [{"role": "analyst", "tenant": TENANT}])
    reader, _ = server.create_person(admin, "paula.reader@example.test", "Paula Reader",
                                     [{"role": "pii-reader", "tenant": TENANT}])
    with server.client(ingest_key) as client:
        response = client.post(f"/tenants/{TENANT}/orders", json={"orders": order_examples})
    assert response.status_code == 200, response.text
    return {"admin": admin, "ingest": ingest_key, "analyst": analyst, "reader": reader,
            "orders": order_examples}


def _get(server: Server, token: str, order_id: str, tenant: str = TENANT,
         purpose: str | None = None) -> Any:
    headers = {"X-Access-Purpose": purpose} if purpose else {}
    with server.client(token, **headers) as client:
        return client.get(f"/tenants/{tenant}/orders/{order_id}")




def _pii_values(order: dict[str, Any]) -> list[str]:
    values = []
    for key in ("BuyerInfo", "ShippingAddress"):
        for value in (order.get(key) or {}).values():
            if isinstance(value, str):
                values.append(value)
    return values


def test_the_order_route_runs_in_the_event_loop(server: Server) -> None:
    """So the reveal tests below cover the event-loop path on both databases (the
    worker-thread path, ``Store.call``, is tests/records')."""
    store = server.runtime.store
    assert store.has_loop_connections


def test_ingest_reports_count_and_is_idempotent(server: Server, world: dict[str, Any]) -> None:
    fresh = copy.deepcopy(world["orders"][0])
    fresh["AmazonOrderId"] = "222-0000000-0000001"
    changed = copy.deepcopy(fresh)
    changed["OrderStatus"] = "Shipped"
    with server.client(world["ingest"]) as client:
        first = client.post(f"/tenants/{TENANT}/orders", json={"orders": [fresh]})
        again = client.post(f"/tenants/{TENANT}/orders", json={"orders": [changed]})
    assert first.json() == {"ingested": 1, "inserted": 1, "updated": 0, "withheld": 0}
    assert again.json() == {"ingested": 1, "inserted": 0, "updated": 1, "withheld": 0}
    shown = _get(server, world["analyst"], changed["AmazonOrderId"]).json()
    assert shown["order"]["OrderStatus"] == "Shipped"


def test_masked_read_shows_shape_but_no_pii(server: Server, world: dict[str, Any]) -> None:
    order = world["orders"][0]
    response = _get(server, world["analyst"], order["AmazonOrderId"])
    assert response.status_code == 200
    body = response.json()
    assert body["pii"] == "masked"
    assert body["order"]["BuyerInfo"]["BuyerEmail"] == "***"
    assert body["order"]["OrderStatus"] == order["OrderStatus"]
    for value in _pii_values(order):
        assert value not in response.text


def test_pii_reader_reveals_with_permitted_purpose(server: Server, world: dict[str, Any]) -> None:
    order = world["orders"][0]
    response = _get(server, world["reader"], order["AmazonOrderId"], purpose="fulfillment")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pii"] == "revealed" and body["purpose"] == "fulfillment"
    assert body["order"]["BuyerInfo"] == order["BuyerInfo"]
    assert body["order"]["ShippingAddress"] == order["ShippingAddress"]


@pytest.mark.parametrize("purpose",
                         ["marketing", "FULFILLMENT", "fulfillment,marketing", "fulfilment"])
def test_reveal_without_permitted_purpose_is_refused(server: Server, world: dict[str, Any],
                                                     purpose: str) -> None:
    order = world["orders"][0]
    response = _get(server, world["reader"], order["AmazonOrderId"], purpose=purpose)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "purpose_not_permitted"
    for value in _pii_values(order):
        assert value not in response.text


@pytest.mark.parametrize("who", ["admin", "analyst", "ingest"])
def test_other_roles_never_see_pii_even_with_a_purpose(server: Server, world: dict[str, Any],
                                                       who: str) -> None:
    order = world["orders"][0]
    response = _get(server, world[who], order["AmazonOrderId"], purpose="fulfillment")
    assert response.status_code in (403, 404)
    for value in _pii_values(order):
        assert value not in response.text


@pytest.mark.parametrize("other_role", ["operator", "admin"])
def test_pii_reader_cannot_be_combined_with_operator_or_admin(server: Server,
                                                             world: dict[str, Any],
                                                             other_role: str) -> None:
    """Separation of duties at the source; the Cedar guardrail (tests/access) backs it up."""
    with server.client(world["admin"]) as client:
        response = client.post("/accounts", json={
            "kind": "person", "email": f"{other_role}.x@example.test", "name": "Otto Ops",
            "grants": [{"role": other_role, "tenant": "*"},
                       {"role": "pii-reader", "tenant": TENANT}]})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_account"


def test_another_tenants_order_is_not_found(server: Server, world: dict[str, Any]) -> None:
    order = world["orders"][0]
    for purpose in (None, "fulfillment"):
        response = _get(server, world["reader"], order["AmazonOrderId"], tenant=OTHER,
                        purpose=purpose)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_ingest_into_ungranted_tenant_is_refused(server: Server, world: dict[str, Any]) -> None:
    with server.client(world["ingest"]) as client:
        response = client.post(f"/tenants/{OTHER}/orders", json={"orders": world["orders"]})
    assert response.status_code == 404
    with server.client(world["reader"]) as client:
        assert client.get(f"/tenants/{OTHER}/orders", params={"buyer_email": "x@y.z"}
                          ).status_code == 404


def test_reader_cannot_ingest(server: Server, world: dict[str, Any]) -> None:
    with server.client(world["reader"]) as client:
        response = client.post(f"/tenants/{TENANT}/orders", json={"orders": world["orders"]})
    assert response.status_code == 403


def _search(server: Server, token: str, purpose: str | None = "fulfillment",
            tenant: str = TENANT, **params: str) -> Any:
    headers = {"X-Access-Purpose": purpose} if purpose else {}
    with server.client(token, **headers) as client:
        return client.get(f"/tenants/{tenant}/orders", params=params)


def test_search_by_normalised_email_uses_blind_index(server: Server,
                                                     world: dict[str, Any]) -> None:
    order = next(o for o in world["orders"] if o.get("BuyerInfo", {}).get("BuyerEmail"))
    email = order["BuyerInfo"]["BuyerEmail"]
    found = _search(server, world["reader"], buyer_email=f"  {email.upper()} ")
    nothing = _search(server, world["reader"], buyer_email="nobody@example.test")
    no_criteria = _search(server, world["reader"])
    assert found.status_code == 200
    ids = {o["AmazonOrderId"] for o in found.json()["orders"]}
    assert order["AmazonOrderId"] in ids
    assert email not in found.text
    assert nothing.json()["orders"] == []
    assert no_criteria.status_code == 422


def _postal_code(world: dict[str, Any]) -> str:
    return str(next(o for o in world["orders"]
                    if (o.get("ShippingAddress") or {}).get("PostalCode"))
               ["ShippingAddress"]["PostalCode"])


def test_an_analyst_cannot_map_orders_to_postal_codes(server: Server,
                                                      world: dict[str, Any]) -> None:
    """The review's finding: an analyst searched by postal code alone, got the masked orders
    with their ids, and so could map every order to its postal code one ZIP code at a time.
    A search by buyer data is a PII operation: refused to an analyst, with or without a
    purpose, and logged as a denial naming the kinds of criteria, never the value."""
    postal = _postal_code(world)
    for purpose in (None, "fulfillment"):
        refused = _search(server, world["analyst"], purpose=purpose, postal_code=postal)
        assert refused.status_code == 403, refused.text
        assert postal not in refused.text
    event = last_request_event(server)
    assert (event.action, event.outcome, event.status, event.criteria) == (
        "orders:search", "denied", 403, "postal-code")
    assert postal not in str([getattr(event, column.name) for column in EventRow.__table__.columns])


@pytest.mark.parametrize("purpose", [None, "marketing"])
def test_a_pii_reader_searches_only_for_a_permitted_purpose(
        server: Server, world: dict[str, Any], purpose: str | None) -> None:
    refused = _search(server, world["reader"], purpose=purpose, postal_code=_postal_code(world))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "purpose_not_permitted"


def test_a_permitted_search_is_logged_with_its_purpose_and_criteria(
        server: Server, world: dict[str, Any]) -> None:
    found = _search(server, world["reader"], purpose="tax-invoicing",
                    postal_code=_postal_code(world))
    assert found.status_code == 200 and found.json()["orders"]
    event = last_request_event(server)
    assert (event.action, event.outcome, event.purpose, event.criteria, event.count) == (
        "orders:search", "success", "tax-invoicing", "postal-code",
        len(found.json()["orders"]))


def test_the_search_budget_holds_against_parallel_requests(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    """Parallel searches by one principal past its budget: exactly the budget is served, the
    rest get 429 with Retry-After (the check and the count are one statement; under READ
    COMMITTED a read-then-write would let several take the last unit)."""
    from concurrent.futures import ThreadPoolExecutor

    limited = Runtime(runtime.settings.model_copy(update={"search_budget_per_hour": 5}),
                      runtime.store, runtime.keyring, runtime.clock)
    with start_server(limited, initialized) as own:
        admin = own.admin_token()
        reader, _ = own.create_person(admin, "pat.prober@example.test", "Pat Prober",
                                      [{"role": "pii-reader", "tenant": TENANT}])
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda n: _search(own, reader, postal_code=f"{n:05d}"),
                                    range(12)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * 5 + [429] * 7
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.json()["error"]["code"] == "budget_exhausted"
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    with runtime.store.engine.connect() as connection:
        outcomes = connection.execute(select(EventRow.outcome, EventRow.status).where(
            EventRow.action == "orders:search")).all()
    assert sorted(outcomes) == sorted([("success", None)] * 5 + [("denied", 429)] * 7)


def test_bad_batch_changes_nothing_and_names_the_path(server: Server,
                                                      world: dict[str, Any]) -> None:
    good = copy.deepcopy(world["orders"][0])
    good["AmazonOrderId"] = "111-0000000-0000001"
    bad = copy.deepcopy(world["orders"][0])
    bad["AmazonOrderId"] = "111-0000000-0000002"
    bad["PurchaseDate"] = "secret-marker@example.test"
    with server.client(world["ingest"]) as client:
        response = client.post(f"/tenants/{TENANT}/orders", json={"orders": [good, bad]})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert "body.orders.1.PurchaseDate" in error["message"]
    assert "secret-marker" not in response.text
    assert _get(server, world["analyst"], "111-0000000-0000001").status_code == 404


@pytest.mark.parametrize("body", [b"{not json", b'{"orders": []}', b'{"orders": "x"}',
                                  b'{"orders": [{}]}', b'{"orders": [], "extra": 1}'])
def test_malformed_ingest_is_422(server: Server, world: dict[str, Any], body: bytes) -> None:
    with server.client(world["ingest"], **{"Content-Type": "application/json"}) as client:
        response = client.post(f"/tenants/{TENANT}/orders", content=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def requests_events_after(server: Server, seq: int) -> list[Any]:
    with server.runtime.store.transaction() as session:
        found = list(session.scalars(select(EventRow).where(
            EventRow.seq > seq, EventRow.channel != "system").order_by(EventRow.seq)))
        session.expunge_all()
        return found


@pytest.mark.parametrize(("tenant", "order_id", "purposes", "bad_field"), [
    ("Acme-Secret", "111-0000000-0000001", [], "path.tenant"),
    ("acme%0A", "111-0000000-0000001", [], "path.tenant"),  # a trailing newline: no match
    (TENANT, "secret!marker", [], "path.amazon_order_id"),
    (TENANT, "x" * 65, [], "path.amazon_order_id"),
    (TENANT, "111-0000000-0000001", ["secret-marker-" + "x" * 51], "header.X-Access-Purpose"),
    (TENANT, "111-0000000-0000001", ["fulfillment", "secret-marker"], "header.X-Access-Purpose"),
])
def test_a_malformed_order_address_is_422_naming_the_field_never_its_value(
        server: Server, world: dict[str, Any], tenant: str, order_id: str, purposes: list[str],
        bad_field: str) -> None:
    """The order route checks its own inputs (web.api.orders.order_address): the patterns in
    full, one purpose of at most 64 characters, and nothing is looked up or revealed."""
    seq_before = last_request_event(server).seq
    with server.client(world["reader"]) as client:
        response = client.get(f"/tenants/{tenant}/orders/{order_id}",
                              headers=[("X-Access-Purpose", purpose) for purpose in purposes])
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert [field["path"] for field in error["fields"]] == [bad_field]
    assert "secret" not in response.text.lower()
    # The refusal's own event, and no other request's (no reveal); the scheduler's jobs may
    # write theirs (channel system) at any moment, so they are not counted.
    [event] = requests_events_after(server, seq_before)
    assert (event.seq > seq_before, event.outcome, event.reason) == (True, "failed",
                                                        "invalid_request")
    # a malformed tenant is not written to the log; a well-formed one is
    assert event.tenant_id == (None if bad_field == "path.tenant" else TENANT)


def test_the_longest_permitted_inputs_pass_the_checks(server: Server,
                                                      world: dict[str, Any]) -> None:
    """The bounds are inclusive: a 63-character tenant, a 64-character order id and a
    64-character purpose get past the checks (to a 404, and a 403 for the unknown purpose)."""
    tenant, order_id = "a" * 63, "1" * 64
    assert _get(server, world["reader"], order_id, tenant=tenant).status_code == 404
    response = _get(server, world["reader"], world["orders"][0]["AmazonOrderId"],
                    purpose="p" * 64)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "purpose_not_permitted"


def test_no_token_and_forged_token_are_401(server: Server, world: dict[str, Any]) -> None:
    order_id = world["orders"][0]["AmazonOrderId"]
    for token in (None, "svs_forged", "svk_forged", world["reader"] + "x", "garbage"):
        response = _get(server, token, order_id) if token else None
        if response is None:
            with server.client() as client:
                response = client.get(f"/tenants/{TENANT}/orders/{order_id}")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize("dates", [
    {"PurchaseDate": "0001-01-01T00:00:00+00:01"},
    {"LastUpdateDate": "9999-12-31T23:59:59-00:01"},
])
def test_a_date_with_no_utc_form_is_422_not_500(server: Server, world: dict[str, Any],
                                                dates: dict[str, str]) -> None:
    order = {**copy.deepcopy(world["orders"][0]), "AmazonOrderId": "111-0000000-0000009",
             **dates}
    with server.client(world["ingest"]) as client:
        response = client.post(f"/tenants/{TENANT}/orders", json={"orders": [order]})
    assert response.status_code == 422, response.text
    assert [field["path"] for field in response.json()["error"]["fields"]] == [
        f"body.orders.0.{next(iter(dates))}"]


def test_an_erased_order_and_an_erased_tenant_answer_410(server: Server,
                                                         world: dict[str, Any]) -> None:
    """Cryptographic erase seen from the API. The server has just revealed the order (its
    tenant key is cached in the process); its data key is destroyed through the server's own
    keyring: a reveal is 410 erased, with no PII, and re-sending the order is 410 too (no
    new key), while the masked read still answers (the clear attributes are not PII). An
    ingest into a tenant whose keys are all destroyed is 410 tenant_erased, logged as such."""
    order = {**copy.deepcopy(world["orders"][0]), "AmazonOrderId": "111-0000000-0000410"}
    order_id, keyring = order["AmazonOrderId"], server.runtime.keyring
    with server.client(world["ingest"]) as client:
        assert client.post(f"/tenants/{TENANT}/orders", json={"orders": [order]}).is_success
    assert _get(server, world["reader"], order_id, purpose="fulfillment").status_code == 200
    with server.runtime.store.transaction() as session:
        key_id = session.scalar(select(Order.data_key_id).where(
            Order.tenant_id == TENANT, Order.amazon_order_id == order_id))
        assert keyring.destroy_data_keys(session, TENANT, [str(key_id)]).data_keys == 1
    response = _get(server, world["reader"], order_id, purpose="fulfillment")
    assert response.status_code == 410 and response.json()["error"]["code"] == "erased"
    for value in _pii_values(order):
        assert value not in response.text
    with server.client(world["ingest"]) as client:
        resent = client.post(f"/tenants/{TENANT}/orders", json={"orders": [order]})
    assert resent.status_code == 410 and resent.json()["error"]["code"] == "erased"
    assert _get(server, world["analyst"], order_id).status_code == 200

    erased = "erased-seller"
    ingest_key = server.create_service(world["admin"], "erased seller ingest",
                                       [{"role": "ingest", "tenant": erased}])
    with server.client(ingest_key) as client:
        assert client.post(f"/tenants/{erased}/orders", json={"orders": [order]}).is_success
    with server.runtime.store.transaction() as session:
        destroyed = keyring.destroy_tenant_keys(session, erased)
    assert destroyed.data_keys == 1 + server.runtime.settings.canaries_per_tenant  # canaries too
    later = {**order, "AmazonOrderId": "111-0000000-0000411"}
    with server.client(ingest_key) as client:
        refused = client.post(f"/tenants/{erased}/orders", json={"orders": [later]})
    assert refused.status_code == 410
    assert refused.json()["error"]["code"] == "tenant_erased"
    assert last_request_event(server).reason == "tenant_erased"
    with server.runtime.store.transaction() as session:
        assert session.scalar(select(Order.id).where(Order.amazon_order_id == later[
            "AmazonOrderId"])) is None
