"""Every route declares its permission action; nothing is reachable without one."""

from __future__ import annotations

import re
from typing import Annotated, Any

import anyio
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute, iter_route_contexts

from sellervault.access.actions import PUBLIC_ACTIONS, Action
from sellervault.access.roles import TENANT_ID_PATTERN
from sellervault.records.spapi import ORDER_ID_PATTERN
from sellervault.runtime import Runtime
from sellervault.web.app import build_api
from sellervault.web.context import (
    DECLARATION_ATTRIBUTE,
    SCOPE_KEY,
    Declaration,
    ForbiddenError,
    GuardedRoute,
    NotAuthenticatedError,
    TenantNotFoundError,
    declaration_of,
    guard,
    new_state,
    require,
)
from sellervault.web.limits import MAX_BODY_BYTES, MAX_INGEST_BODY_BYTES


def _routes(api: FastAPI) -> list[Any]:
    """Every route the app really serves, through included routers too."""
    return list(iter_route_contexts(api.routes))


def _declared_actions(route: Any) -> list[Action]:
    assert isinstance(route.original_route, APIRoute), \
        f"{route.path} is not an API route, so it cannot declare an action"
    return [getattr(dep.call, DECLARATION_ATTRIBUTE).action
            for dep in route.dependant.dependencies
            if dep.call is not None and hasattr(dep.call, DECLARATION_ATTRIBUTE)]


def test_every_route_declares_exactly_one_action() -> None:
    routes = _routes(build_api())
    assert len(routes) >= 10, "the walk found too few routes to be walking the app"
    for route in routes:
        actions = _declared_actions(route)
        assert len(actions) == 1, f"{route.path} {route.methods} declares {actions}"


def test_only_session_password_enrolment_health_and_docs_are_public() -> None:
    public = {route.path for route in _routes(build_api())
              for action in _declared_actions(route) if action in PUBLIC_ACTIONS}
    assert public == {"/api/v1/session", "/api/v1/password", "/api/v1/health",
                      "/api/v1/openapi.json", "/api/v1/enrolment/start",
                      "/api/v1/enrolment/finish"}


def test_the_walk_notices_a_route_without_an_action() -> None:
    """The check above can fail: a route added without `require(...)` is caught."""
    api = build_api()

    @api.get("/api/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    offenders = [route.path for route in _routes(api) if not _declared_actions(route)]
    assert offenders == ["/api/v1/forgotten"]


def test_every_route_applies_its_declaration_before_the_body_is_read() -> None:
    """Each route is a GuardedRoute (the 401 for a missing token, and the 413 for a body
    announced over the route's limit, come before FastAPI reads the body); and the walk can
    tell: a route added with plain FastAPI is not one."""
    api = build_api()

    @api.post("/api/v1/plain")
    def plain(_state: Annotated[Any, Depends(require(Action.ACCOUNTS_CREATE))]
              ) -> dict[str, str]:
        return {}

    unguarded = [route.path for route in _routes(api)
                 if not isinstance(route.original_route, GuardedRoute)]
    assert unguarded == ["/api/v1/plain"]
    assert declaration_of(_routes(api)[-1].original_route) == Declaration(
        Action.ACCOUNTS_CREATE)


def test_only_ingest_takes_a_large_body() -> None:
    limits = {(method, route.path): declaration_of(route.original_route).max_body  # type: ignore[union-attr]
              for route in _routes(build_api()) for method in route.methods}
    assert {key: limit for key, limit in limits.items() if limit != MAX_BODY_BYTES} == {
        ("POST", "/api/v1/tenants/{tenant}/orders"): MAX_INGEST_BODY_BYTES}


def test_openapi_document_is_served_and_lists_the_contract(server: Any) -> None:
    with server.client() as client:
        document = client.get("/openapi.json").json()
    for path in ("/api/v1/session", "/api/v1/accounts", "/api/v1/tenants/{tenant}/orders",
                 "/api/v1/tenants/{tenant}/orders/{amazon_order_id}"):
        assert path in document["paths"]


def test_openapi_document_describes_the_order_routes_own_checks() -> None:
    """The order route reads its inputs itself (web.api.orders.order_address); the document
    still states them, with the bounds that are enforced."""
    document = build_api().openapi()
    operation = document["paths"]["/api/v1/tenants/{tenant}/orders/{amazon_order_id}"]["get"]
    parameters = {(p["in"], p["name"]): p for p in operation["parameters"]}
    assert set(parameters) == {("path", "tenant"), ("path", "amazon_order_id"),
                               ("header", "X-Access-Purpose")}
    assert parameters["path", "tenant"]["schema"]["pattern"] == TENANT_ID_PATTERN
    assert parameters["path", "amazon_order_id"]["schema"]["pattern"] == ORDER_ID_PATTERN
    assert parameters["header", "X-Access-Purpose"]["schema"]["maxLength"] == 64


def test_every_non_public_route_refuses_a_request_without_a_token_first(server: Any) -> None:
    """Attacker's side: no token is answered 401 before any input is even validated (bad
    path values, no body), so an anonymous probe learns nothing and is logged as denied."""
    routes = [route for route in _routes(build_api())
              if not set(_declared_actions(route)) & PUBLIC_ACTIONS]
    assert len(routes) >= 8
    with server.client() as client:
        for route in routes:
            path = re.sub(r"\{[^}]+\}", "!!", route.path).removeprefix("/api/v1")
            for method in route.methods:
                response = client.request(method, path)
                assert response.status_code == 401, (method, route.path, response.text)
                assert response.json()["error"]["code"] == "unauthenticated"


def test_a_route_whose_guard_has_not_passed_cannot_reach_the_runtime(runtime: Runtime) -> None:
    state = new_state(runtime, "203.0.113.9", [])
    state.action = Action.ORDERS_READ
    with pytest.raises(NotAuthenticatedError):
        _ = state.runtime
    with pytest.raises(NotAuthenticatedError):
        _ = state.principal


def test_a_refused_principal_gets_no_runtime_even_if_the_refusal_is_caught(
        server: Any) -> None:
    """An admin has no grant for orders:read on a tenant: the guard refuses, and a route
    that swallowed the refusal would still find no runtime."""
    route = next(r for r in _routes(build_api()) if r.path.endswith("/{amazon_order_id}"))
    declared = declaration_of(route.original_route)
    assert declared is not None
    state = new_state(server.runtime, "203.0.113.9", [])
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"",
             "headers": [(b"authorization", f"Bearer {server.admin_token()}".encode())],
             "path_params": {"tenant": "acme", "amazon_order_id": "123-1234567-1234567"},
             SCOPE_KEY: state}
    with pytest.raises((ForbiddenError, TenantNotFoundError)):
        anyio.run(guard, Request(scope), declared)
    with pytest.raises(NotAuthenticatedError):
        _ = state.runtime
    state.action = Action.HEALTH_READ  # nor by naming a public action afterwards
    with pytest.raises(NotAuthenticatedError):
        _ = state.runtime


def test_a_trailing_slash_is_not_redirected_to_the_host_the_request_names(server: Any) -> None:
    """Before: ``GET /api/v1/health/`` with ``Host: evil.example`` was a 307 to
    ``https://evil.example/api/v1/health``, unauthenticated: an open redirect."""
    with server.client(Host="evil.example") as client:
        for path in ("/health/", "/openapi.json/", "/session/"):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 404, (path, response.status_code)
            assert "location" not in response.headers
            assert "evil.example" not in response.text


def test_health_answers_a_head_request(server: Any) -> None:
    with server.client() as client:
        response = client.head("/health")
    assert response.status_code == 200 and response.content == b""
