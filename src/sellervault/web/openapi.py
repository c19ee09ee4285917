"""The OpenAPI document: FastAPI's, completed with what the guard and the error handlers do.

FastAPI documents a route's parameters, body and success answer. What else a route can
answer is decided by its declaration (``web.context``) and by the error handlers, so it is
added here from the declaration, and the document cannot drift from the code:

- the bearer scheme on every route that is not public (``security``), so that a client, or
  a fuzzer checking that authentication is enforced, knows which routes need a token;
- the refusals of the guard: 401 (no token, or one that is not live), 403 (the policy),
  404 (a tenant the caller holds no grant on), 413 (a body over the route's limit, on any
  route: a GET can announce one too), 422 (a malformed input); 503 everywhere (the
  security log cannot be written, so nothing is served); and each route's own
  (``own_errors``: a conflict, an order not found...);
- every error in its one shape, ``{"error": {"code", "message", "fields"?}}``;
- links between operations (the account an admin creates is the one a security officer
  approves; the order an ingest stores is the one a reader reads), for stateful testing.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from sellervault.access.actions import PUBLIC_ACTIONS
from sellervault.web.context import declaration_of

BEARER = "bearer"
_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}

DESCRIPTIONS = {
    401: "no bearer token, a token that is not live, or credentials that do not match",
    403: "the policy refuses this caller (or this purpose)",
    404: "not found (or a tenant the caller holds no grant on)",
    409: "conflicts with what exists",
    410: "erased: the order's data key was destroyed (`erased`), or every key of the "
         "tenant (`tenant_erased`)",
    413: "the body is larger than this route takes",
    422: "a malformed input, named by its path",
    451: "the buyer's processing is restricted (`processing_restricted`): their data is "
         "kept but not used until a security officer lifts the restriction",
    429: "over a budget or a limit (searches per hour, failed sign-ins per address per day): "
         "retry after the Retry-After header's seconds",
    503: "the security log cannot be written (nothing is served that it does not record), "
         "the tenant's keys are being rotated, or the shared counters cannot be reached "
         "(Retry-After)",
}


class FieldProblem(BaseModel):
    path: str
    """Where: ``body.orders.0.PurchaseDate``; a key the API does not declare is ``(key)``."""
    problem: str


class ErrorBody(BaseModel):
    code: str
    message: str
    fields: list[FieldProblem] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def own_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses`` for the refusals of its own service (beyond the guard's)."""
    return {status: {"description": DESCRIPTIONS[status], "model": ErrorResponse}
            for status in statuses}


def _guard_statuses(route: APIRoute) -> set[int]:
    declared = declaration_of(route)
    statuses = {413, 503}  # any request may announce a body larger than its route takes
    if declared is None:
        return statuses
    if declared.action not in PUBLIC_ACTIONS:
        statuses |= {401, 403}
    if declared.tenant_scoped:
        statuses |= {404, 422}
    if route.body_field is not None:
        statuses.add(422)
    if route.dependant.query_params or route.dependant.path_params:
        statuses.add(422)
    return statuses


def _operation_ids(document: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(path, method): operation["operationId"]
            for path, operations in document["paths"].items()
            for method, operation in operations.items() if "operationId" in operation}


# (from path, method, status) -> {name: (to path, method, {parameter: runtime expression})}
_LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("/api/v1/accounts", "post", "201"): {
        "ApproveAccount": ("/api/v1/approvals/{account_id}/approve", "post",
                           {"account_id": "$response.body#/id"}),
        "RejectAccount": ("/api/v1/approvals/{account_id}/reject", "post",
                          {"account_id": "$response.body#/id"}),
    },
    ("/api/v1/tenants/{tenant}/orders", "post", "200"): {
        "ReadIngestedOrder": ("/api/v1/tenants/{tenant}/orders/{amazon_order_id}", "get",
                              {"tenant": "$request.path.tenant",
                               "amazon_order_id": "$request.body#/orders/0/AmazonOrderId"}),
    },
}


def complete(api: FastAPI, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (FastAPI's, for ``api``) with security, errors and links added."""
    document = copy.deepcopy(document)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorResponse"] = error_schema
    schemas.pop("HTTPValidationError", None)  # FastAPI's 422 shape: not what is answered
    schemas.pop("ValidationError", None)
    components["securitySchemes"] = {BEARER: {
        "type": "http", "scheme": "bearer",
        "description": "a session token (POST /api/v1/session) or a service's API key"}}
    for context in iter_route_contexts(api.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        declared = declaration_of(route)
        for method in route.methods or ():
            operation = document["paths"][context.path][method.lower()]
            public = declared is None or declared.action in PUBLIC_ACTIONS
            operation["security"] = [] if public else [{BEARER: []}]
            responses = operation["responses"]
            for guard_status in sorted(_guard_statuses(route)):
                responses[str(guard_status)] = {
                    "description": DESCRIPTIONS[guard_status],
                    "content": {"application/json": {"schema": _ERROR_REF}}}
    ids = _operation_ids(document)
    for (path, method, status), links in _LINKS.items():
        response = document["paths"][path][method]["responses"][status]
        response["links"] = {name: {"operationId": ids[(to_path, to_method)],
                                    "parameters": parameters}
                             for name, (to_path, to_method, parameters) in links.items()}
    return document
