"""Every route declares its permission action; nothing is reachable without one."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from sellervault.access.actions import PUBLIC_ACTIONS, Action
from sellervault.web.app import build_api
from sellervault.web.context import ACTION_ATTRIBUTE


def _routes(api: FastAPI) -> list[Any]:
    """Every route the app really serves, through included routers too."""
    return list(iter_route_contexts(api.routes))


def _declared_actions(route: Any) -> list[Action]:
    assert isinstance(route.original_route, APIRoute), \
        f"{route.path} is not an API route, so it cannot declare an action"
    return [getattr(dep.call, ACTION_ATTRIBUTE) for dep in route.dependant.dependencies
            if dep.call is not None and hasattr(dep.call, ACTION_ATTRIBUTE)]


def test_every_route_declares_exactly_one_action() -> None:
    routes = _routes(build_api())
    assert len(routes) >= 10, "the walk found too few routes to be walking the app"
    for route in routes:
        actions = _declared_actions(route)
        assert len(actions) == 1, f"{route.path} {route.methods} declares {actions}"


def test_only_session_password_health_and_docs_are_public() -> None:
    public = {route.path for route in _routes(build_api())
              for action in _declared_actions(route) if action in PUBLIC_ACTIONS}
    assert public == {"/api/v1/session", "/api/v1/password", "/api/v1/health",
                      "/api/v1/openapi.json"}


def test_the_walk_notices_a_route_without_an_action() -> None:
    """The check above can fail: a route added without `require(...)` is caught."""
    api = build_api()

    @api.get("/api/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    offenders = [route.path for route in _routes(api) if not _declared_actions(route)]
    assert offenders == ["/api/v1/forgotten"]


def test_openapi_document_is_served_and_lists_the_contract(server: Any) -> None:
    with server.client() as client:
        document = client.get("/openapi.json").json()
    for path in ("/api/v1/session", "/api/v1/accounts", "/api/v1/tenants/{tenant}/orders",
                 "/api/v1/tenants/{tenant}/orders/{amazon_order_id}"):
        assert path in document["paths"]
