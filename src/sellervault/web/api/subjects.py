"""Data subjects' rights (role ``security-officer``; the register also ``auditor``): a
buyer's processing restricted until lifted (``records.restrictions``), and one PII field of
an order corrected (``records.corrections``). Emails and corrected values are in bodies
only, never answered or logged; answers carry pseudonyms."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from sellervault.access.actions import Action
from sellervault.access.roles import TENANT_ID_PATTERN
from sellervault.records import corrections, restrictions
from sellervault.records.spapi import ORDER_ID_PATTERN
from sellervault.web.context import RequestState, api_router, require
from sellervault.web.openapi import own_errors

router = api_router("subjects")

RESTRICTION_ID = Path(max_length=32, pattern=r"^rst_[0-9a-f]{24}$")


class RestrictionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(max_length=64, pattern=TENANT_ID_PATTERN)
    buyer_email: str = Field(min_length=3, max_length=320,
                             description="the buyer whose orders are restricted (not kept)")
    reason: str = Field(min_length=1, max_length=500, description="why (a ticket, a case)")


class RestrictionOut(BaseModel):
    """A restriction as ``records.restrictions.Restricted`` holds it, field for field."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    tenant_id: str = Field(serialization_alias="tenant")
    buyer: str = Field(description="the buyer's pseudonym in the security log")
    reason: str
    restricted_by: str
    created_at: datetime
    lifted_by: str | None
    lifted_at: datetime | None


@router.post("/restrictions", status_code=201, response_model=RestrictionOut,
             response_model_by_alias=True, responses=own_errors(404, 409, 422))
def restrict_processing(
    body: RestrictionIn,
    state: Annotated[RequestState, Depends(require(Action.RESTRICTIONS_PLACE))],
) -> RestrictionOut:
    """Restrict the processing of a buyer's orders in a tenant: every masked read, reveal
    and search hit of them is refused (451 ``processing_restricted``) until lifted; their
    data is kept. 404: a tenant with no data; 409: restricted already."""
    return RestrictionOut.model_validate(restrictions.restrict(
        state.on_tenant(body.tenant), state.auditor, state.principal.id, body.tenant,
        body.buyer_email, body.reason))


@router.get("/restrictions")
def list_restrictions(
    state: Annotated[RequestState, Depends(require(Action.RESTRICTIONS_LIST))],
    tenant: Annotated[str | None, Query(max_length=64, pattern=TENANT_ID_PATTERN)] = None,
    active: Annotated[bool, Query(description="only those not lifted")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[RestrictionOut]]:
    """The register, newest first (lifted ones too, unless ``active``)."""
    found = restrictions.list_restrictions(state.runtime, state.auditor, tenant, active, limit)
    return {"restrictions": [RestrictionOut.model_validate(r) for r in found]}


@router.post("/restrictions/{restriction_id}/lift", response_model=RestrictionOut,
             response_model_by_alias=True, responses=own_errors(404, 409, 422))
def lift_restriction(
    restriction_id: Annotated[str, RESTRICTION_ID],
    state: Annotated[RequestState, Depends(require(Action.RESTRICTIONS_LIFT))],
) -> RestrictionOut:
    """The buyer's orders are processed again (409 if lifted already)."""
    return RestrictionOut.model_validate(restrictions.lift(
        state.on_tenant(restrictions.tenant_of(state.runtime, restriction_id)), state.auditor,
        state.principal.id, restriction_id))


class CorrectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(max_length=64, pattern=TENANT_ID_PATTERN)
    amazon_order_id: str = Field(max_length=64, pattern=ORDER_ID_PATTERN)
    field: Literal[tuple(corrections.CORRECTABLE)] = Field(  # type: ignore[valid-type]
        description="the PII field to set, by its path in the order")
    value: str = Field(min_length=1, max_length=corrections.MAX_VALUE,
                       description="its correct value (one line; never logged or answered)")


class CorrectionOut(BaseModel):
    """A correction as ``records.corrections.Corrected`` holds it (never the value)."""

    model_config = ConfigDict(from_attributes=True)
    tenant_id: str = Field(serialization_alias="tenant")
    amazon_order_id: str
    field: str
    buyer: str | None = Field(description="the buyer's pseudonym after the correction")
    corrected_at: datetime


@router.post("/corrections", response_model=CorrectionOut, response_model_by_alias=True,
             responses=own_errors(404, 409, 410, 422))
def correct_field(
    body: CorrectionIn,
    state: Annotated[RequestState, Depends(require(Action.ORDERS_CORRECT))],
) -> CorrectionOut:
    """Correct one PII field of an order: re-sealed under its data key, its blind index
    (email, phone, postal code) recomputed. 404: no such order; 409: under a legal hold, a
    canary, or an email while the buyer is restricted; 410: its PII is erased."""
    return CorrectionOut.model_validate(corrections.correct(
        state.on_tenant(body.tenant), state.auditor, body.tenant, body.amazon_order_id,
        body.field, body.value))
