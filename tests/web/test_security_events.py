"""Every API call writes one typed security event, and a PII endpoint fails closed (503)
when the event cannot be written."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, text

from sellervault import bootstrap
from sellervault.audit.models import EventRow
from sellervault.runtime import Runtime
from tests.support import Server, block_event_writes, start_server


def _events(runtime: Runtime) -> list[EventRow]:
    with runtime.store.transaction() as session:
        return list(session.scalars(select(EventRow).order_by(EventRow.seq)))


@pytest.fixture
def own_server(runtime: Runtime, initialized: bootstrap.InitResult) -> Iterator[Server]:
    with start_server(runtime, initialized) as running:
        yield running


def test_each_request_writes_exactly_one_event(own_server: Server, runtime: Runtime) -> None:
    before = len(_events(runtime))
    with own_server.client() as client:
        client.get("/health")
        client.get("/no-such-route")
        client.get("/tenants/acme/orders/123-1234567-1234567")
        client.post("/session", json={"email": "x@example.test"})
    events = _events(runtime)[before:]
    assert [(e.action, e.outcome, e.status) for e in events] == [
        ("health:read", "success", 200),
        ("http:unrouted", "failed", 404),
        ("orders:read", "denied", 401),
        ("session:create", "failed", 422),
    ]
    assert all(e.channel == "api" and e.source_ip == "127.0.0.1" and e.request_id
               for e in events)


@pytest.mark.parametrize("tenant", ["Jane.Doe@Example.com", "a" * 70, "acme%0A"])
def test_a_malformed_tenant_is_refused_and_never_written_to_the_log(
        own_server: Server, runtime: Runtime, initialized: bootstrap.InitResult,
        tenant: str) -> None:
    """Attacker's side: the tenant path segment is free text until checked. Each tenant-scoped
    route refuses a malformed one, after authentication (401 with a token that is not live,
    422 with one that is), and its security event records no tenant: no request text in the
    log, and no value too long for the column turning the refusal into a 503."""
    admin = own_server.admin_token()
    before = len(_events(runtime))
    for token, status in (("svs_not-live", 401), (admin, 422)):
        with own_server.client(token) as client:
            statuses = [client.get(f"/tenants/{tenant}/orders/123-1234567-1234567").status_code,
                        client.get(f"/tenants/{tenant}/orders",
                                   params={"postal_code": "12345"}).status_code,
                        client.post(f"/tenants/{tenant}/orders",
                                    json={"orders": []}).status_code,
                        client.get(f"/tenants/{tenant}/canaries").status_code]
        assert statuses == [status] * 4
    events = _events(runtime)[before:]
    assert [(e.outcome, e.reason, e.tenant_id) for e in events] == [
        ("denied", "unauthenticated", None)] * 4 + [("failed", "invalid_request", None)] * 4
    assert {e.actor_id for e in events[4:]} == {initialized.admin_id}


def test_cli_channel_is_recorded(own_server: Server, runtime: Runtime) -> None:
    with own_server.client(**{"X-SellerVault-Client": "cli"}) as client:
        client.get("/health")
    assert _events(runtime)[-1].channel == "cli"


def test_refused_reveal_names_actor_tenant_and_reason(own_server: Server,
                                                      runtime: Runtime) -> None:
    admin = own_server.admin_token()
    reader, created = own_server.create_person(
        admin, "paula.reader@example.test", "Paula Reader",
        [{"role": "pii-reader", "tenant": "acme"}])
    with own_server.client(reader, **{"X-Access-Purpose": "marketing"}) as client:
        response = client.get("/tenants/acme/orders/123-1234567-1234567")
    assert response.status_code == 403
    last = _events(runtime)[-1]
    assert (last.action, last.outcome, last.actor_id, last.tenant_id, last.reason) == (
        "orders:reveal", "denied", created["id"], "acme", "purpose_not_permitted")


def test_reveal_fails_closed_when_the_log_cannot_be_written(
        own_server: Server, runtime: Runtime, order_examples: list[dict[str, Any]]) -> None:
    admin = own_server.admin_token()
    ingest = own_server.create_service(admin, "seller app ingest",
                                       [{"role": "ingest", "tenant": "acme"}])
    reader, _ = own_server.create_person(admin, "paula.reader@example.test", "Paula Reader",
                                         [{"role": "pii-reader", "tenant": "acme"}])
    order = order_examples[0]
    with own_server.client(ingest) as client:
        assert client.post("/tenants/acme/orders", json={"orders": [order]}).status_code == 200
    block_event_writes(runtime)
    with own_server.client(reader, **{"X-Access-Purpose": "fulfillment"}) as client:
        response = client.get(f"/tenants/acme/orders/{order['AmazonOrderId']}")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "audit_unavailable"
    assert order["BuyerInfo"]["BuyerEmail"] not in response.text
    # Named like every response (README); before, this one had no X-Request-Id.
    assert re.fullmatch(r"[0-9a-f]{16}", response.headers["x-request-id"])


def test_every_request_fails_closed_on_a_wiped_log(own_server: Server, runtime: Runtime,
                                                  order_examples: list[dict[str, Any]]) -> None:
    """A database writer deletes the log and its head. Before, the next request started a new
    chain at 1 (and `audit verify` then called the log intact); now no event can be written,
    so every request, a reveal included, is refused with 503 and leaves the tables empty."""
    admin = own_server.admin_token()
    reader, _ = own_server.create_person(admin, "paula.reader@example.test", "Paula Reader",
                                         [{"role": "pii-reader", "tenant": "acme"}])
    ingest = own_server.create_service(admin, "shop-sync", [{"role": "ingest",
                                                            "tenant": "acme"}])
    order = order_examples[0]
    with own_server.client(ingest) as client:
        assert client.post("/tenants/acme/orders", json={"orders": [order]}).status_code == 200
    with runtime.store.engine.begin() as connection:
        connection.execute(text("DELETE FROM security_events"))
        connection.execute(text("DELETE FROM security_event_head"))
    with own_server.client(reader, **{"X-Access-Purpose": "fulfillment"}) as client:
        revealed = client.get(f"/tenants/acme/orders/{order['AmazonOrderId']}")
        health = client.get("/health")
    for response in (revealed, health):
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "audit_unavailable"
    assert order["BuyerInfo"]["BuyerEmail"] not in revealed.text
    assert _events(runtime) == []


def test_a_failed_reveal_records_its_permitted_purpose(own_server: Server,
                                                       runtime: Runtime) -> None:
    admin = own_server.admin_token()
    reader, _ = own_server.create_person(admin, "paula.reader@example.test", "Paula Reader",
                                         [{"role": "pii-reader", "tenant": "acme"}])
    with own_server.client(reader, **{"X-Access-Purpose": "tax-invoicing"}) as client:
        assert client.get("/tenants/acme/orders/123-1234567-1234567").status_code == 404
    last = _events(runtime)[-1]
    assert (last.action, last.outcome, last.status, last.purpose) == (
        "orders:reveal", "failed", 404, "tax-invoicing")
