"""web.errors: every refusal is ``{"error": {...}}`` with a fixed message, and a validation
error names the place of a problem, never the input.

Found by fuzzing (issue 10): a 422 named ``body.<key>`` for an unknown key, on every route
with a body, with or without credentials: a 10 KB key made a 20 KB response, and a password
sent as a key in a login came back.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sellervault.web.app import build_api
from sellervault.web.errors import UNDECLARED_KEY, declared_names
from tests.support import Server

SECRET_KEY = "hunter2-Secret-Passw0rd"
LONG_KEY = "k" * 10_000


@pytest.fixture(scope="module")
def tokens(server: Server) -> dict[str, str]:
    admin = server.admin_token()
    return {"admin": admin, "ingest": server.create_service(
        admin, "echo prober", [{"role": "ingest", "tenant": "acme"}])}


ROUTES: list[tuple[str, dict[str, Any], str | None]] = [
    # (path, a body otherwise valid, the credentials the route wants)
    ("/session", {"email": "a@example.test", "password": "x", "totp": "123456"}, None),
    ("/password", {"email": "a@example.test", "current_password": "x", "totp": "123456",
                   "new_password": "y"}, None),
    ("/accounts", {"kind": "service", "name": "etl"}, "admin"),
    ("/tenants/acme/orders", {"orders": [{"AmazonOrderId": "1", "PurchaseDate": "x",
                                          "LastUpdateDate": "x", "OrderStatus": "x"}]},
     "ingest"),
]


@pytest.mark.parametrize(("path", "body", "wants"), ROUTES)
@pytest.mark.parametrize("key", [SECRET_KEY, LONG_KEY])
def test_an_unknown_key_is_never_echoed(server: Server, tokens: dict[str, str], path: str,
                                        body: dict[str, Any], wants: str | None,
                                        key: str) -> None:
    """With the credentials the route wants, the 422 names the object that holds the key,
    not the key; without them (none, or a token that is not live) the 401 comes before the
    body is read."""
    for token in (tokens[wants] if wants else None, None, "svs_not-live"):
        with server.client(token) as client:
            response = client.post(path, json={**body, key: "v"})
        assert key not in response.text and key.casefold() not in response.text.casefold()
        assert len(response.content) < 1024
        if wants is None or token == tokens[wants]:
            assert response.status_code == 422, response.text
            fields = response.json()["error"]["fields"]
            assert [field for field in fields if field["problem"] == "extra_forbidden"] in (
                [{"path": f"body.{UNDECLARED_KEY}", "problem": "extra_forbidden"}],
                [{"path": f"body.service.{UNDECLARED_KEY}", "problem": "extra_forbidden"}])
        else:
            assert response.status_code == 401


def test_an_unknown_key_of_an_ingest_order_is_not_echoed_either(
        server: Server, tokens: dict[str, str]) -> None:
    """Deeper in: an undeclared key inside a declared object is kept as data (SP-API objects
    gain fields), and when its value is refused, the path names the object."""
    key = tokens["ingest"]
    order = {"AmazonOrderId": "181-0000000-0000001", "PurchaseDate": "2026-11-01T10:00:00Z",
             "LastUpdateDate": "2026-11-01T10:00:00Z", "OrderStatus": "Shipped",
             "BuyerInfo": {SECRET_KEY: "\ud800"}}
    with server.client(key, **{"Content-Type": "application/json"}) as client:
        response = client.post("/tenants/acme/orders",
                               content=json.dumps({"orders": [order]}).encode())
    assert response.status_code == 422
    assert SECRET_KEY not in response.text
    assert response.json()["error"]["fields"] == [
        {"path": f"body.orders.0.BuyerInfo.{UNDECLARED_KEY}", "problem": "invalid_unicode"}]


def test_the_declared_names_come_from_the_api_document() -> None:
    names = declared_names(build_api().openapi())
    assert {"orders", "AmazonOrderId", "BuyerInfo", "BuyerEmail", "email", "new_password",
            "X-Access-Purpose", "amazon_order_id", "after", "body", "query"} <= names
    assert SECRET_KEY not in names and "Extra" not in names


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/tenants/acme/orders", "GET, POST"),
    ("DELETE", "/accounts", "GET, POST"),
    ("OPTIONS", "/health", "GET, HEAD"),
    ("GET", "/approvals/acc_0123456789abcdef01234567/approve", "POST"),
])
def test_a_method_not_served_names_every_method_that_is(server: Server, method: str,
                                                        path: str, allowed: str) -> None:
    """405 with ``Allow`` (RFC 9110): every method served at the path, across the routes that
    share it. (It was empty: the walk looked for methods on FastAPI's included routers.)"""
    with server.client() as client:
        response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.json()["error"]["code"] == "method_not_allowed"
