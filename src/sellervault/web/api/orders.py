"""Orders of a tenant: ingest (``ingest``), read masked, reveal with a purpose
(``pii-reader``), search through the blind index, canaries and buyers' pseudonyms
(``security-officer``)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from sellervault.access.actions import Action
from sellervault.access.roles import TENANT_ID_PATTERN
from sellervault.records import service as records
from sellervault.records.spapi import ORDER_ID_PATTERN, IngestRequest, map_order
from sellervault.web.context import (
    PURPOSE_HEADER,
    PURPOSE_MAX_LENGTH,
    RequestState,
    api_router,
    require,
)
from sellervault.web.limits import MAX_INGEST_BODY_BYTES
from sellervault.web.openapi import own_errors

router = api_router("orders")


class OrderResponse(JSONResponse):
    """An order view, rendered by pydantic-core: the view is plain JSON values already (parsed
    from storage), and this is a quarter of the standard library encoder's cost."""

    def render(self, content: Any) -> bytes:
        return to_json(content)


TenantPath = Annotated[str, Path(pattern=TENANT_ID_PATTERN)]


@router.post("/tenants/{tenant}/orders", responses=own_errors(410))
def ingest_orders(
    tenant: TenantPath,
    body: IngestRequest,
    state: Annotated[RequestState, Depends(require(Action.ORDERS_INGEST, tenant_scoped=True,
                                                   max_body=MAX_INGEST_BODY_BYTES))],
) -> dict[str, int]:
    result = records.ingest(state.runtime, state.auditor, tenant,
                            [map_order(order) for order in body["orders"]])
    return {"ingested": result.ingested, "inserted": result.inserted, "updated": result.updated,
            "withheld": result.withheld}


_ORDER_ID = re.compile(ORDER_ID_PATTERN)


def order_id(request: Request) -> str:
    """The order route's order id, checked here instead of declared as a FastAPI parameter.

    It is the hot path's only input but for the tenant and purpose (which the guard checks),
    and FastAPI's generic per-parameter work (it inspects each declared parameter's
    annotation again on every request) was a tenth of a reveal's instructions
    (docs/benchmarks.md, sixth pass). The check is the declared one: the same pattern,
    matched in full (a trailing newline does not pass); a failure is the same 422 naming
    the field, never its value."""
    amazon_order_id: str = request.path_params["amazon_order_id"]
    if _ORDER_ID.fullmatch(amazon_order_id) is None:
        raise RequestValidationError([{"type": "string_pattern_mismatch",
                                       "loc": ("path", "amazon_order_id")}])
    return amazon_order_id


def _purpose_parameter(required: bool, description: str) -> dict[str, Any]:
    return {"name": PURPOSE_HEADER, "in": "header", "required": required,
            "schema": {"type": "string", "maxLength": PURPOSE_MAX_LENGTH},
            "description": description}


_ORDER_ADDRESS_PARAMETERS = [  # what the guard and order_id read, for the OpenAPI document
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
                                            '"purpose"?}'}, **own_errors(410, 451)})
async def get_order(
    request: Request,
    state: Annotated[RequestState, Depends(require(Action.ORDERS_READ, tenant_scoped=True,
                                                   with_purpose=Action.ORDERS_REVEAL))],
) -> JSONResponse:
    """Masked by default; with ``X-Access-Purpose`` the PII role gets the PII in clear (the
    guard has authorized ``orders:reveal`` for that purpose). The hot path: ``Store.run``
    awaits it in the event loop (its writes on a worker thread on SQLite).
    (Rendered straight to JSON: no re-validation of a plain dict.)"""
    tenant: str = request.path_params["tenant"]  # (the guard checked it)
    amazon_order_id, purpose, run = order_id(request), state.purpose, state.runtime.store.run
    if purpose is None:
        return _masked(await run(records.read_masked, state.runtime, state.auditor, tenant,
                                 amazon_order_id))
    return _revealed(await run(records.reveal, state.runtime, state.auditor, tenant,
                               amazon_order_id, purpose), purpose)


def _masked(order: dict[str, Any]) -> JSONResponse:
    return OrderResponse({"order": order, "pii": "masked"})


def _revealed(order: dict[str, Any], purpose: str) -> JSONResponse:
    return OrderResponse({"order": order, "pii": "revealed", "purpose": purpose})


def _search_criteria(request: Request) -> dict[str, Any]:
    """The kinds of criteria a search gives, for its event (never their values)."""
    query = request.query_params
    return {"criteria": records.search_criteria(
        buyer_email=query.get("buyer_email"), buyer_phone=query.get("buyer_phone"),
        postal_code=query.get("postal_code")) or None}


@router.get("/tenants/{tenant}/orders", responses=own_errors(429), openapi_extra={"parameters": [
    _purpose_parameter(True, "a permitted purpose: searching by buyer data is a PII operation")]})
def search_orders(
    tenant: TenantPath,
    state: Annotated[RequestState, Depends(require(Action.ORDERS_SEARCH, tenant_scoped=True,
                                                   with_purpose=Action.ORDERS_SEARCH,
                                                   notes=_search_criteria))],
    buyer_email: Annotated[str | None, Query(max_length=320)] = None,
    buyer_phone: Annotated[str | None, Query(max_length=64)] = None,
    postal_code: Annotated[str | None, Query(max_length=32)] = None,
) -> dict[str, Any]:
    """Masked orders found by buyer email, phone or postal code: a PII operation (the PII
    role, a permitted purpose, a budget per hour), since it confirms or maps PII. Hits whose
    buyer's processing is restricted are withheld: ``restricted`` counts them."""
    assert state.purpose is not None  # the guard authorized orders:search for it
    found = records.search(state.runtime, state.auditor, state.principal.id, tenant,
                           purpose=state.purpose, buyer_email=buyer_email,
                           buyer_phone=buyer_phone, postal_code=postal_code)
    return {"orders": found.orders, "pii": "masked", "restricted": found.restricted}


@router.get("/tenants/{tenant}/canaries")
def list_canaries(
    tenant: TenantPath,
    state: Annotated[RequestState, Depends(require(Action.CANARIES_LIST, tenant_scoped=True))],
) -> dict[str, list[str]]:
    return {"canaries": records.list_canaries(state.runtime, state.auditor, tenant)}


class BuyerLookup(BaseModel):
    """One buyer, by email or phone (in the body: never in a URL, which proxies log)."""

    model_config = ConfigDict(extra="forbid")
    buyer_email: str | None = Field(default=None, max_length=320)
    buyer_phone: str | None = Field(default=None, max_length=64)


@router.post("/tenants/{tenant}/buyer-pseudonyms", responses=own_errors(429))
def buyer_pseudonym(
    tenant: TenantPath,
    body: BuyerLookup,
    state: Annotated[RequestState, Depends(require(Action.BUYERS_PSEUDONYM, tenant_scoped=True))],
) -> dict[str, str]:
    """The buyer's pseudonym in the security log (``GET /audit/events?buyer=``): the same
    answer whether or not the tenant has such a buyer."""
    return {"buyer": records.buyer_pseudonym(state.runtime, state.auditor, state.principal.id,
                                             tenant,
                                             buyer_email=body.buyer_email,
                                             buyer_phone=body.buyer_phone)}
