"""Orders of a tenant: ingest (``ingest``), read masked, reveal with a purpose
(``pii-reader``), search through the blind index, canaries (``security-officer``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, NamedTuple

from fastapi import Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool

from sellervault.access.actions import Action
from sellervault.access.roles import TENANT_ID_PATTERN, Principal, is_tenant_id
from sellervault.records import service as records
from sellervault.records.errors import PurposeNotPermittedError
from sellervault.records.registry import PURPOSES
from sellervault.records.spapi import ORDER_ID_PATTERN, IngestRequest, map_order
from sellervault.web.context import ForbiddenError, RequestState, api_router, require
from sellervault.web.limits import MAX_INGEST_BODY_BYTES

router = api_router("orders")


class OrderResponse(JSONResponse):
    """An order view, rendered by pydantic-core: the view is plain JSON values already (parsed
    from storage), and this is a quarter of the standard library encoder's cost."""

    def render(self, content: Any) -> bytes:
        return to_json(content)


TenantPath = Annotated[str, Path(pattern=TENANT_ID_PATTERN)]


@router.post("/tenants/{tenant}/orders")
def ingest_orders(
    tenant: TenantPath,
    body: IngestRequest,
    state: Annotated[RequestState, Depends(require(Action.ORDERS_INGEST, tenant_scoped=True,
                                                   max_body=MAX_INGEST_BODY_BYTES))],
) -> dict[str, int]:
    state.authenticate()
    result = records.ingest(state.runtime, state.auditor, tenant,
                            [map_order(order) for order in body["orders"]])
    return {"ingested": result.ingested, "inserted": result.inserted, "updated": result.updated}


PURPOSE_HEADER = "X-Access-Purpose"
PURPOSE_MAX_LENGTH = 64
_PURPOSE_KEY = PURPOSE_HEADER.lower().encode()  # (ASGI header names are lower case)
_ORDER_ID = re.compile(ORDER_ID_PATTERN)


class OrderAddress(NamedTuple):
    """Which order a read asks for, and the purpose it states (``None``: a masked read)."""

    tenant: str
    amazon_order_id: str
    purpose: str | None


def order_address(request: Request) -> OrderAddress:
    """The order route's three inputs, checked here instead of declared as FastAPI parameters.

    They are the hot path's only inputs, and FastAPI's generic per-parameter work (it inspects
    each declared parameter's annotation again on every request) was a tenth of a reveal's
    instructions (docs/benchmarks.md, sixth pass). The checks are the declared ones: the same
    patterns, matched in full (a trailing newline does not pass), at most one purpose of at
    most 64 characters; a failure is the same 422 naming each bad field, never its value."""
    tenant = request.path_params["tenant"]
    amazon_order_id = request.path_params["amazon_order_id"]
    errors: list[dict[str, Any]] = []
    if not is_tenant_id(tenant):
        errors.append({"type": "string_pattern_mismatch", "loc": ("path", "tenant")})
    if _ORDER_ID.fullmatch(amazon_order_id) is None:
        errors.append({"type": "string_pattern_mismatch", "loc": ("path", "amazon_order_id")})
    purpose = _stated_purpose(request, errors)
    if errors:
        raise RequestValidationError(errors)
    return OrderAddress(tenant, amazon_order_id, purpose)


def _stated_purpose(request: Request, errors: list[dict[str, Any]]) -> str | None:
    """The one purpose the request states (``X-Access-Purpose``), or None; two, or one over
    64 characters, add a validation error."""
    purposes = [value for name, value in request.scope["headers"] if name == _PURPOSE_KEY]
    if len(purposes) > 1:
        errors.append({"type": "too_many_values", "loc": ("header", PURPOSE_HEADER)})
    elif purposes and len(purposes[0]) > PURPOSE_MAX_LENGTH:
        errors.append({"type": "string_too_long", "loc": ("header", PURPOSE_HEADER)})
    return purposes[0].decode("latin-1") if purposes else None  # (as Starlette decodes)


def _purpose_parameter(required: bool, description: str) -> dict[str, Any]:
    return {"name": PURPOSE_HEADER, "in": "header", "required": required,
            "schema": {"type": "string", "maxLength": PURPOSE_MAX_LENGTH},
            "description": description}


_ORDER_ADDRESS_PARAMETERS = [  # what order_address reads, for the OpenAPI document
    {"name": "tenant", "in": "path", "required": True,
     "schema": {"type": "string", "pattern": TENANT_ID_PATTERN}},
    {"name": "amazon_order_id", "in": "path", "required": True,
     "schema": {"type": "string", "pattern": ORDER_ID_PATTERN}},
    _purpose_parameter(False, "a permitted purpose: the PII in clear for the PII role; "
                              "absent: masked"),
]


@router.get("/tenants/{tenant}/orders/{amazon_order_id}", response_class=OrderResponse,
            openapi_extra={"parameters": _ORDER_ADDRESS_PARAMETERS},
            responses={200: {"description": '{"order": {...}, "pii": "masked"|"revealed", '
                                            '"purpose"?}'}})
async def get_order(
    request: Request,
    state: Annotated[RequestState, Depends(require(Action.ORDERS_READ, tenant_scoped=True))],
) -> JSONResponse:
    """Masked by default; with ``X-Access-Purpose`` the PII role gets the PII in clear.
    The hot path: on PostgreSQL it is awaited in the event loop, elsewhere it runs on a
    worker thread. (Rendered straight to JSON: no re-validation of a plain dict.)"""
    tenant, amazon_order_id, purpose = order_address(request)
    if not state.in_event_loop:
        return await run_in_threadpool(_get_order, tenant, amazon_order_id, state, purpose)
    await state.authenticate_async()
    if purpose is None:
        return _masked(await records.read_masked_async(state.runtime, state.auditor, tenant,
                                                       amazon_order_id))
    _authorize_reveal(state, tenant, purpose)
    return _revealed(await records.reveal_async(state.runtime, state.auditor, tenant,
                                                amazon_order_id, purpose), purpose)


def _get_order(tenant: str, amazon_order_id: str, state: RequestState,
               purpose: str | None) -> JSONResponse:
    state.authenticate()
    if purpose is None:
        return _masked(records.read_masked(state.runtime, state.auditor, tenant,
                                           amazon_order_id))
    _authorize_reveal(state, tenant, purpose)
    return _revealed(records.reveal(state.runtime, state.auditor, tenant, amazon_order_id,
                                    purpose), purpose)


def _authorize_reveal(state: RequestState, tenant: str, purpose: str) -> None:
    _for_purpose(state, purpose,
                 lambda: state.authorize(Action.ORDERS_REVEAL, tenant, {"purpose": purpose}))


def _for_purpose(state: RequestState, purpose: str,
                 decide: Callable[[], Principal]) -> Principal:
    """The policy decision ``decide`` about a PII operation stating ``purpose``: a refusal of
    a purpose that is not permitted says so (403 purpose_not_permitted); a permitted purpose
    is noted, so the fallback event of a later failure names it."""
    try:
        principal = decide()
    except ForbiddenError:
        if purpose not in PURPOSES:
            raise PurposeNotPermittedError() from None
        raise
    state.extra["purpose"] = purpose
    return principal


def _masked(order: dict[str, Any]) -> JSONResponse:
    return OrderResponse({"order": order, "pii": "masked"})


def _revealed(order: dict[str, Any], purpose: str) -> JSONResponse:
    return OrderResponse({"order": order, "pii": "revealed", "purpose": purpose})


@router.get("/tenants/{tenant}/orders", openapi_extra={"parameters": [
    _purpose_parameter(True, "a permitted purpose: searching by buyer data is a PII operation")]})
def search_orders(
    request: Request,
    tenant: TenantPath,
    state: Annotated[RequestState, Depends(require(Action.ORDERS_SEARCH, tenant_scoped=True))],
    buyer_email: Annotated[str | None, Query(max_length=320)] = None,
    buyer_phone: Annotated[str | None, Query(max_length=64)] = None,
    postal_code: Annotated[str | None, Query(max_length=32)] = None,
) -> dict[str, Any]:
    """Masked orders found by buyer email, phone or postal code: a PII operation (the PII
    role, a permitted purpose, a budget per hour), since it confirms or maps PII."""
    errors: list[dict[str, Any]] = []
    purpose = _stated_purpose(request, errors)
    if errors:
        raise RequestValidationError(errors)
    state.extra["criteria"] = records.search_criteria(
        buyer_email=buyer_email, buyer_phone=buyer_phone, postal_code=postal_code) or None
    stated = purpose or ""
    principal = _for_purpose(state, stated, lambda: state.authenticate({"purpose": stated}))
    orders = records.search(state.runtime, state.auditor, principal.id, tenant,
                            purpose=stated, buyer_email=buyer_email, buyer_phone=buyer_phone,
                            postal_code=postal_code)
    return {"orders": orders, "pii": "masked"}


@router.get("/tenants/{tenant}/canaries")
def list_canaries(
    tenant: TenantPath,
    state: Annotated[RequestState, Depends(require(Action.CANARIES_LIST, tenant_scoped=True))],
) -> dict[str, list[str]]:
    state.authenticate()
    return {"canaries": records.list_canaries(state.runtime, state.auditor, tenant)}
