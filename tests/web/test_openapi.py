"""web.openapi: the document describes the API as it behaves.

Before issue 10, the 400/401/403/404 answers were not declared, the declared 422 was
FastAPI's shape rather than ``{"error": ...}``, no security scheme was declared (so a fuzzer
could not check authentication), and there were no links for stateful testing. Whether each
route really answers only what is declared is what tests/web/test_openapi_fuzz.py checks,
against the live server.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from openapi_spec_validator import validate

from sellervault.access.actions import PUBLIC_ACTIONS
from sellervault.web.app import build_api
from sellervault.web.context import declaration_of
from sellervault.web.openapi import BEARER

ERROR = {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_api().openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, operation) for path, operations in document["paths"].items()
            for method, operation in operations.items()]


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_route_is_documented_with_the_authentication_it_enforces(
        document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"][BEARER] == {
        "type": "http", "scheme": "bearer",
        "description": document["components"]["securitySchemes"][BEARER]["description"]}
    routes = list(iter_route_contexts(build_api().routes))
    documented = 0
    for route in routes:
        declared = declaration_of(route.original_route)
        assert declared is not None
        if not route.original_route.include_in_schema:
            continue
        for method in route.methods:
            operation = document["paths"][route.path][method.lower()]
            public = declared.action in PUBLIC_ACTIONS
            assert operation["security"] == ([] if public else [{BEARER: []}]), route.path
            assert ("401" in operation["responses"]) == (not public or route.path in (
                "/api/v1/session", "/api/v1/password", "/api/v1/enrolment/start",
                "/api/v1/enrolment/finish")), route.path
            documented += 1
    assert documented == len(_operations(document)) >= 14


def test_every_error_is_the_one_error_shape(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, method, operation in _operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == ERROR, (
                    path, method, status)
        assert "503" in operation["responses"], (path, method)


@pytest.mark.parametrize(("path", "method", "statuses"), [
    ("/api/v1/tenants/{tenant}/orders", "post", {"200", "401", "403", "404", "410", "413",
                                                 "422", "503"}),
    ("/api/v1/tenants/{tenant}/orders/{amazon_order_id}", "get",
     {"200", "401", "403", "404", "410", "413", "422", "451", "503"}),
    ("/api/v1/tenants/{tenant}/orders", "get", {"200", "401", "403", "404", "413", "422",
                                                "429", "503"}),
    ("/api/v1/accounts", "post", {"201", "401", "403", "409", "413", "422", "503"}),
    ("/api/v1/session", "post", {"200", "401", "403", "413", "422", "429", "503"}),
    ("/api/v1/health", "get", {"200", "413", "503"}),
])
def test_each_route_declares_what_it_answers(document: dict[str, Any], path: str, method: str,
                                             statuses: set[str]) -> None:
    assert set(document["paths"][path][method]["responses"]) == statuses


def test_links_lead_from_what_is_created_to_where_it_is_used(document: dict[str, Any]) -> None:
    ids = {operation["operationId"] for _, _, operation in _operations(document)}
    links = {name: link for _, _, operation in _operations(document)
             for response in operation["responses"].values()
             for name, link in response.get("links", {}).items()}
    assert set(links) == {"ApproveAccount", "RejectAccount", "ReadIngestedOrder"}
    assert all(link["operationId"] in ids for link in links.values())
    assert links["ReadIngestedOrder"]["parameters"]["amazon_order_id"] == \
        "$request.body#/orders/0/AmazonOrderId"


def test_a_person_needs_an_email_and_a_service_has_none(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "email" in schemas["PersonIn"]["required"]
    assert "email" not in schemas["ServiceIn"]["properties"]
    assert schemas["ServiceIn"]["additionalProperties"] is False
