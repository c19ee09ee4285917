"""web.context's guard, from the attacker's side: authentication and authorization come
before the body is read and before any input is validated, and the request's event names
who asked for what.

Found by fuzzing (issue 10): with any string as a bearer token the server read and parsed
the body (an 87 MB body stalled every other request for seconds) and answered 422 listing
the bad fields, logged as a failed request rather than a failed authentication; with a valid
token, a request that failed validation was logged with no actor; a reveal that failed
before its route ran was logged as ``orders:read`` with no purpose.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from fastapi import Request
from fastapi.routing import iter_route_contexts
from sqlalchemy import func, select, update

from sellervault.access.actions import PUBLIC_ACTIONS
from sellervault.accounts.models import ApiKey
from sellervault.records.models import Order
from sellervault.web import context
from sellervault.web.app import build_api
from sellervault.web.context import Declaration, RequestState, declaration_of
from tests.support import Server, last_request_event

NOT_LIVE = "svs_not-a-live-token"


@pytest.fixture(scope="module")
def admin(server: Server) -> str:
    """One administrator login for the module (a second within 30 s waits for the clock)."""
    return server.admin_token()




def _guarded_routes() -> list[tuple[str, str]]:
    routes = []
    for route in iter_route_contexts(build_api().routes):
        declared = declaration_of(route.original_route)
        assert declared is not None
        if declared.action not in PUBLIC_ACTIONS:
            routes += [(method, route.path) for method in route.methods]
    return routes


def test_a_token_that_is_not_live_is_401_before_any_input_is_checked(server: Server) -> None:
    """Malformed path values, an over-long query, a body that is not JSON: a token that is
    not live gets 401 on every route, never a 422 that describes the route's inputs."""
    routes = _guarded_routes()
    assert len(routes) >= 9
    with server.client(NOT_LIVE, **{"Content-Type": "application/json",
                                    "X-Access-Purpose": "x" * 100}) as client:
        for method, path in routes:
            url = re.sub(r"\{[^}]+\}", "!!", path).removeprefix("/api/v1")
            response = client.request(method, url, params={"limit": "0", "after": "-1"},
                                      content=b"{not json" if method == "POST" else None)
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"]["code"] == "unauthenticated"
            event = last_request_event(server)
            assert (event.outcome, event.reason, event.actor_id) == (
                "denied", "unauthenticated", None)


def _tls(server: Server) -> ssl.SSLSocket:
    parts = urlsplit(server.base_url)
    context = ssl.create_default_context(cafile=str(server.ca_file))
    raw = socket.create_connection((parts.hostname, parts.port), timeout=5)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


@pytest.mark.parametrize("path", ["/api/v1/tenants/acme/orders", "/api/v1/accounts"])
def test_a_token_that_is_not_live_gets_its_401_before_the_body_is_read(server: Server,
                                                                       path: str) -> None:
    """A body announced at the route's limit, of which only the head is sent: the 401 comes
    at once, and the connection closes rather than read the rest."""
    started = time.monotonic()
    with _tls(server) as tls:
        tls.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {NOT_LIVE}\r\n"
                    f"content-type: application/json\r\ncontent-length: 65536\r\n\r\n"
                    .encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert b"connection: close" in answer.lower()
    assert time.monotonic() - started < 4


def test_a_request_that_fails_validation_is_logged_with_its_actor(
        server: Server, admin: str, initialized_admin_id: str) -> None:
    with server.client(admin) as client:
        response = client.post("/accounts", json={"kind": "robot", "name": "R2"})
    assert response.status_code == 422
    event = last_request_event(server)
    assert (event.action, event.outcome, event.reason, event.actor_id) == (
        "accounts:create", "failed", "invalid_request", initialized_admin_id)


@pytest.fixture(scope="module")
def initialized_admin_id(server: Server, admin: str) -> str:
    with server.client(admin) as client:
        account_id: str = client.get("/session").json()["account_id"]
    return account_id


@pytest.mark.parametrize(("purpose", "logged"), [("fulfillment", "fulfillment"),
                                                 ("jane.doe@example.test", None)])
def test_a_reveal_refused_before_its_route_names_the_reveal_and_its_purpose(
        server: Server, purpose: str, logged: str | None) -> None:
    """The event of a request stating a purpose names ``orders:reveal`` from the start, and
    the purpose when it is one of the vocabulary's (free text never reaches the log)."""
    with server.client(NOT_LIVE, **{"X-Access-Purpose": purpose}) as client:
        response = client.get("/tenants/acme/orders/123-1234567-1234567")
    assert response.status_code == 401
    event = last_request_event(server)
    assert (event.action, event.purpose, event.outcome) == ("orders:reveal", logged, "denied")


def test_the_guard_is_applied_once_per_request(server: Server, admin: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """GuardedRoute applies it, and the route's dependency sees that it has. (It ran twice:
    FastAPI makes the route's declaration anew for each copy of a route, so the dependency's
    check by identity never matched, and every request looked its token up twice.)"""
    applied: list[str] = []
    original = context.guard

    async def counting(request: Request, declared: Declaration) -> RequestState:
        applied.append(declared.action.value)
        return await original(request, declared)

    monkeypatch.setattr(context, "guard", counting)
    with server.client(admin) as client:
        assert client.get("/session").status_code == 200
        assert client.post("/accounts", json={"kind": "robot"}).status_code == 422
    assert applied == ["session:read", "accounts:create"]


def test_a_credential_revoked_while_its_body_arrives_does_not_act(server: Server,
                                                                 admin: str) -> None:
    """The guard decides before the body is read; a body can take minutes. A key revoked in
    between is refused once the body is in, and nothing is stored."""
    key = server.create_service(admin, "slow sender",
                                [{"role": "ingest", "tenant": "acme"}])
    body = json.dumps({"orders": [{
        "AmazonOrderId": "201-0000000-0000001", "PurchaseDate": "2026-11-01T10:00:00Z",
        "LastUpdateDate": "2026-11-01T10:00:00Z", "OrderStatus": "Shipped"}]}).encode()
    with _tls(server) as tls:
        tls.sendall(b"POST /api/v1/tenants/acme/orders HTTP/1.1\r\nhost: x\r\n"
                    b"authorization: Bearer " + key.encode() + b"\r\n"
                    b"content-type: application/json\r\n"
                    b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
        time.sleep(0.3)  # the guard has passed; the route waits for the rest of the body
        with server.runtime.store.transaction() as session:
            session.execute(update(ApiKey).values(revoked_at=datetime.now(UTC)))
        tls.sendall(body[10:])
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := tls.recv(65536)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    with server.runtime.store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 0
    event = last_request_event(server)
    assert (event.action, event.outcome, event.reason) == ("orders:ingest", "denied",
                                                           "unauthenticated")


def test_an_oversized_body_from_an_unknown_caller_is_a_401_not_a_413(server: Server) -> None:
    """A route's body limit is not told to a caller who is not known (nor logged as a
    failed request instead of a failed authentication)."""
    with _tls(server) as tls:
        tls.sendall(f"POST /api/v1/accounts HTTP/1.1\r\nhost: x\r\nauthorization: Bearer "
                    f"{NOT_LIVE}\r\ncontent-type: application/json\r\ncontent-length: 70000"
                    f"\r\n\r\n".encode())
        assert tls.recv(65536).startswith(b"HTTP/1.1 401 ")


@pytest.mark.parametrize(("path", "purpose", "status", "code", "reason"), [
    ("/tenants/globex/orders/123-1234567-1234567", "fulfillment", 404, "not_found",
     "no_grant_on_tenant"),
    ("/tenants/globex/orders?postal_code=12345", "marketing", 404, "not_found",
     "no_grant_on_tenant"),
    ("/tenants/acme/orders/123-1234567-1234567", "fulfillment", 403, "forbidden", "forbidden"),
    ("/tenants/acme/orders?postal_code=12345", None, 403, "purpose_not_permitted",
     "purpose_not_permitted"),
    ("/tenants/acme/orders?postal_code=12345", "marketing", 403, "purpose_not_permitted",
     "purpose_not_permitted"),
])
def test_each_refusal_of_the_decision_is_answered_and_logged_as_a_denial(
        server: Server, admin: str, path: str, purpose: str | None, status: int, code: str,
        reason: str) -> None:
    """The guard maps ``access.decisions``' refusals and decides nothing itself: an analyst
    of acme gets 404 on a tenant it holds no grant on (whatever the purpose), 403 for a PII
    operation on its own, ``purpose_not_permitted`` when the purpose is missing or unknown."""
    analyst = server.create_service(admin, "acme analytics", [{"role": "analyst",
                                                              "tenant": "acme"}])
    headers = {"X-Access-Purpose": purpose} if purpose is not None else {}
    with server.client(analyst, **headers) as client:
        response = client.get(path)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    event = last_request_event(server)
    assert (event.outcome, event.status, event.reason) == ("denied", status, reason)


def test_two_authorization_headers_are_refused(server: Server, admin: str) -> None:
    """A proxy that takes the last one would disagree with the vault about who is calling."""
    with server.client() as client:
        response = client.get("/session", headers=[("Authorization", f"Bearer {admin}"),
                                                   ("Authorization", f"Bearer {NOT_LIVE}")])
    assert response.status_code == 401


def test_an_anonymous_caller_cannot_write_tenant_shaped_text_into_the_log(
        server: Server, admin: str) -> None:
    with server.client() as client:
        assert client.get("/tenants/5551234567/canaries").status_code == 401
    assert last_request_event(server).tenant_id is None
    with server.client(admin) as client:  # a known caller's is recorded
        assert client.get("/tenants/5551234567/canaries").status_code == 403
    assert last_request_event(server).tenant_id == "5551234567"
