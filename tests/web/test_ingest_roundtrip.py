"""A property of ingest over HTTPS: whatever JSON an ingest key can store reads back exactly,
masked and revealed, as valid JSON; whatever it cannot is refused (422) and nothing of it is
stored.

Hypothesis generates orders whose undeclared fields, and the undeclared keys of their
declared objects, hold any JSON value, including what JSON cannot carry (NaN, infinities,
numbers past a double), text with lone surrogates or NUL characters, and nesting past the
limit. Before issue 10, such an order could be stored and then fail every read (a 500), or
be served back as text that is not JSON.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sellervault.web.body import MAX_JSON_DEPTH
from tests.support import Server

TENANT = "acme"
DECLARED_OBJECTS = ("OrderTotal", "BuyerInfo", "ShippingAddress")
ORDER_DEPTH = 3  # body {1} > orders [2] > the order {3}
_ids = itertools.count(1)

text = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates and NUL too
scalars = (st.none() | st.booleans() | st.integers() | st.integers(-10**400, 10**400)
           | st.floats(allow_nan=True, allow_infinity=True) | text)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(text, inner, max_size=3), max_leaves=12)
deep = st.integers(MAX_JSON_DEPTH - 6, MAX_JSON_DEPTH + 3).map(
    lambda depth: json.loads("[" * depth + "]" * depth))
extras = st.dictionaries(st.text(st.characters(exclude_categories=()), min_size=1,
                                 max_size=8).map(lambda key: "X" + key),
                         values | deep, max_size=3)


def storable(value: Any, depth: int) -> bool:
    """The specification, written independently of ``web.body``: JSON (RFC 8259) that
    PostgreSQL's text can hold, nested at most ``MAX_JSON_DEPTH`` levels."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list | dict):
        if depth > MAX_JSON_DEPTH:
            return False
        items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
        return all((key is None or storable(key, depth)) and storable(item, depth + 1)
                   for key, item in items)
    return True


def strict(text_: str) -> Any:
    """Parse as JSON and nothing else (the standard library also takes NaN, Infinity)."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text_, parse_constant=refuse)


@pytest.fixture(scope="module")
def keys(server: Server) -> dict[str, str]:
    """The reader is a service: it reveals up to 60 distinct orders in a few seconds, which
    would disable a person (the retrieval-volume rule: 20 distinct buyers in 5 minutes, an
    order without a buyer counting as one), as it should."""
    admin = server.admin_token()
    officer = server.create_officer(admin, "roundtrip officer")
    with server.client(admin) as client:
        reader = client.post("/accounts", json={
            "kind": "service", "name": "roundtrip reader",
            "grants": [{"role": "pii-reader", "tenant": TENANT}]}).json()
    with server.client(officer) as client:
        assert client.post(f"/approvals/{reader['id']}/approve").status_code == 200
    return {"ingest": server.create_service(admin, "roundtrip ingest",
                                            [{"role": "ingest", "tenant": TENANT}]),
            "reader": str(reader["api_key"])}


def _order(amazon_order_id: str, top: dict[str, Any],
           inner: dict[str, dict[str, Any]]) -> dict[str, Any]:
    order: dict[str, Any] = {"AmazonOrderId": amazon_order_id,
                             "PurchaseDate": "2026-11-01T10:00:00Z",
                             "LastUpdateDate": "2026-11-01T10:05:00Z", "OrderStatus": "Shipped",
                             **top}
    for name, fields in inner.items():
        order[name] = fields
    return order


def _expected(order: dict[str, Any]) -> dict[str, Any]:
    """What a reveal gives back: a None field of the order or of a declared object means
    absent (``records.spapi``), so it is dropped; anything else comes back as it was."""
    return {key: ({k: v for k, v in value.items() if v is not None}
                  if key in DECLARED_OBJECTS else value)
            for key, value in order.items() if value is not None}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(top=extras, inner=st.fixed_dictionaries({name: extras for name in DECLARED_OBJECTS}))
def test_what_ingest_stores_reads_back_exactly_and_what_it_cannot_is_refused(
        server: Server, keys: dict[str, str], top: dict[str, Any],
        inner: dict[str, dict[str, Any]]) -> None:
    amazon_order_id = f"191-{next(_ids):07d}-0000001"
    order = _order(amazon_order_id, top, inner)
    body = json.dumps({"orders": [order]}, allow_nan=True)  # \uXXXX escapes for surrogates
    with server.client(keys["ingest"], **{"Content-Type": "application/json"}) as client:
        response = client.post(f"/tenants/{TENANT}/orders", content=body.encode())
    with server.client(keys["reader"]) as client:
        masked = client.get(f"/tenants/{TENANT}/orders/{amazon_order_id}")
        revealed = client.get(f"/tenants/{TENANT}/orders/{amazon_order_id}",
                              headers={"X-Access-Purpose": "fulfillment"})
    event("stored" if storable(order, ORDER_DEPTH) else "refused")
    if not storable(order, ORDER_DEPTH):
        assert response.status_code == 422, response.text
        assert (masked.status_code, revealed.status_code) == (404, 404)  # nothing stored
        return
    assert response.status_code == 200, response.text
    assert masked.status_code == 200 and revealed.status_code == 200
    strict(masked.text)
    served = strict(revealed.text)["order"]
    expected = _expected(order)
    assert {key: served.get(key) for key in expected} == expected
