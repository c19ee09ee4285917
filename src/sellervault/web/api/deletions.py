"""Deletion and return requests (role ``security-officer``; the register also ``auditor``):
filed, listed, read, cancelled and executed (``deletion``); and legal holds that keep an
order from retention. A buyer scope's email is in the
body only, used to find the buyer and not kept; answers carry ids, pseudonyms, counts and
times, never PII."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool

from sellervault.access.actions import Action
from sellervault.access.roles import TENANT_ID_PATTERN
from sellervault.deletion import execution, holds, requests
from sellervault.records.spapi import ORDER_ID_PATTERN
from sellervault.web.context import RequestState, api_router, require
from sellervault.web.openapi import own_errors

router = api_router("deletions")

REQUEST_ID = Path(max_length=32, pattern=r"^del_[0-9a-f]{24}$")


class DeletionRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: Literal["order", "buyer", "tenant"]
    tenant: str = Field(max_length=64, pattern=TENANT_ID_PATTERN)
    amazon_order_id: str | None = Field(default=None, max_length=64, pattern=ORDER_ID_PATTERN,
                                        description="scope order: the order")
    buyer_email: str | None = Field(default=None, max_length=320,
                                    description="scope buyer: every order of this email in "
                                                "the tenant (not kept)")
    requested_by: str = Field(min_length=1, max_length=200,
                              description="who asked: the marketplace, a ticket")
    received_at: AwareDatetime | None = Field(
        default=None, description="when the request reached the company (default: now); "
                                  "the deadline runs from here")
    return_: StrictBool = Field(default=False, alias="return",
                                description="return the data before deleting it")
    return_to: dict[str, Any] | None = Field(
        default=None, description="with return: the recipient's public key as a JWK (EC "
                                  "P-256/P-384/P-521 or OKP X25519/X448); the data is "
                                  "returned encrypted to it (JWE ECDH-ES+A256KW, A256GCM)")


class DeletionRequestOut(BaseModel):
    """A request as ``deletion.requests.Request`` holds it, field for field (``tenant`` and
    ``return`` named as the request body names them)."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    scope: str
    tenant: str = Field(validation_alias="tenant_id")
    amazon_order_id: str | None
    buyer: str | None = Field(description="the buyer's pseudonym in the security log")
    return_: bool = Field(validation_alias="return_data", serialization_alias="return")
    received_at: datetime
    deadline: datetime
    status: str
    step: str | None
    created_by: str
    created_at: datetime
    completed_at: datetime | None
    orders: int | None
    data_keys: int | None
    tenant_keys: int | None
    rows_deleted: int | None = Field(description="orders deleted so far (the progress)")
    return_key_id: str | None = Field(description="the recipient key's RFC 7638 thumbprint")
    returned: int | None = Field(description="orders returned")
    return_approved_by: str | None = Field(
        description="the second security officer who approved the return")
    return_sha256: str | None = Field(description="SHA-256 of the returned file")
    certificate_id: str | None


@router.post("/deletion-requests", status_code=201, response_model=DeletionRequestOut,
             response_model_by_alias=True, responses=own_errors(404, 409, 422))
def file_deletion_request(
    body: DeletionRequestIn,
    state: Annotated[RequestState, Depends(require(Action.DELETIONS_CREATE))],
) -> DeletionRequestOut:
    """File a request; its deadline is the configured hours (72) after ``received_at``. An
    order or tenant the service does not hold is 404; a buyer is never refused for having
    no orders. A scope holding an order under an active legal hold is 409 ``legal_hold``
    (the hold prevails; its ids are named), and nothing is filed."""
    return DeletionRequestOut.model_validate(requests.file_request(
        state.on_tenant(body.tenant), state.auditor, state.principal.id, scope=body.scope,
        tenant_id=body.tenant, requested_by=body.requested_by, return_data=body.return_,
        return_to=body.return_to, amazon_order_id=body.amazon_order_id,
        buyer_email=body.buyer_email, received_at=body.received_at))


@router.get("/deletion-requests")
def list_deletion_requests(
    state: Annotated[RequestState, Depends(require(Action.DELETIONS_LIST))],
    status: Annotated[Literal["pending", "executing", "completed", "cancelled"] | None,
                      Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[DeletionRequestOut]]:
    """The register, newest first."""
    found = requests.list_requests(state.runtime, state.auditor, status, limit)
    return {"deletion_requests": [DeletionRequestOut.model_validate(request) for request in found]}


@router.get("/deletion-requests/{request_id}", response_model=DeletionRequestOut,
            response_model_by_alias=True, responses=own_errors(404, 422))
def get_deletion_request(
    request_id: Annotated[str, REQUEST_ID],
    state: Annotated[RequestState, Depends(require(Action.DELETIONS_LIST))],
) -> DeletionRequestOut:
    return DeletionRequestOut.model_validate(requests.get_request(state.runtime, state.auditor,
                                                      request_id))


@router.post("/deletion-requests/{request_id}/cancel", response_model=DeletionRequestOut,
             response_model_by_alias=True, responses=own_errors(404, 409, 422))
def cancel_deletion_request(
    request_id: Annotated[str, REQUEST_ID],
    state: Annotated[RequestState, Depends(require(Action.DELETIONS_CANCEL))],
) -> DeletionRequestOut:
    """Only a pending request (409 once its execution has begun)."""
    rt = state.on_tenant(requests.tenant_of(state.runtime, request_id))
    return DeletionRequestOut.model_validate(requests.cancel_request(
        rt, state.auditor, state.principal.id, request_id))


class ExecutionOut(BaseModel):
    status: str
    step: str | None
    orders: int | None = Field(description="orders the scope held when its keys went")
    rows_deleted: int | None = Field(description="of those, deleted so far (the progress)")
    certificate_id: str | None


@router.post("/deletion-requests/{request_id}/execute", response_model=ExecutionOut,
             responses={**own_errors(404, 409, 422), 202: {
                 "model": ExecutionOut,
                 "description": "a large scope goes on in the background: its keys are "
                                "destroyed (unless data is returned first); the "
                                "deletion-executions job completes it"}})
def execute_deletion_request(
    request_id: Annotated[str, REQUEST_ID],
    response: Response,
    state: Annotated[RequestState, Depends(require(Action.DELETIONS_EXECUTE))],
) -> ExecutionOut:
    """Destroy the scope's keys, delete its rows, verify: each step once, resumable (run it
    again after a failure). A completed request answers as it is (200). A scope of more than
    1,000 orders answers 202 once its keys are destroyed: the rest goes on in the
    background (``GET .../{id}``: ``rows_deleted`` of ``orders``). 409 ``legal_hold`` if
    an order of the scope is under an active legal hold: nothing is destroyed, and a request
    none of whose steps ran is pending again (cancel it, or execute it once the hold is
    released)."""
    rt = state.on_tenant(requests.tenant_of(state.runtime, request_id))
    done = execution.start(rt, state.auditor, state.principal.id, request_id)
    if done.status != requests.COMPLETED:
        response.status_code = 202
    return ExecutionOut(status=done.status, step=done.step, orders=done.orders,
                        rows_deleted=done.rows_deleted, certificate_id=done.certificate_id)


@router.post("/deletion-requests/{request_id}/approve-return",
             response_model=DeletionRequestOut, response_model_by_alias=True,
             responses=own_errors(404, 409, 422))
def approve_return(
    request_id: Annotated[str, REQUEST_ID],
    state: Annotated[RequestState, Depends(require(Action.DELETIONS_APPROVE_RETURN))],
) -> DeletionRequestOut:
    """A second security officer approves a pending request's return and the recipient key
    it names (``return_key_id``): a request that returns data is executed only then. 403
    for the officer who filed it; 404 if it returns nothing; 409 once approved or begun."""
    rt = state.on_tenant(requests.tenant_of(state.runtime, request_id))
    return DeletionRequestOut.model_validate(requests.approve_return(
        rt, state.auditor, state.principal.id, request_id))


RETURN_SHA256_HEADER = "X-SellerVault-Return-SHA256"


@router.get("/deletion-requests/{request_id}/return", response_class=StreamingResponse,
            responses={**own_errors(404, 409, 410, 422), 200: {
                "content": {"text/plain": {}},
                "description": "one JWE compact serialization per line"}})
def get_returned_file(
    request_id: Annotated[str, REQUEST_ID],
    state: Annotated[RequestState, Depends(require(Action.DELETIONS_RETURN_READ))],
) -> Response:
    """The returned data: one JWE (ECDH-ES+A256KW, A256GCM) per line, encrypted to the
    recipient's key, which alone opens it; its SHA-256 is the request's ``return_sha256``
    and the certificate's (also in the ``X-SellerVault-Return-SHA256`` header). Streamed, a
    few parts at a time. 404 if the request returns nothing, 409 before it is executed, 410
    once discarded (7 days after the request completed)."""
    rt = state.on_tenant(requests.tenant_of(state.runtime, request_id))
    returned = requests.returned_file(rt, state.auditor, request_id)
    return StreamingResponse(returned.chunks, media_type="text/plain; charset=us-ascii",
                             headers={"Content-Length": str(returned.size),
                                      RETURN_SHA256_HEADER: returned.sha256,
                                      "Content-Disposition":
                                          f'attachment; filename="{request_id}.jwe.txt"'})


HOLD_ID = Path(max_length=32, pattern=r"^hld_[0-9a-f]{24}$")


class LegalHoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(max_length=64, pattern=TENANT_ID_PATTERN)
    amazon_order_id: str = Field(max_length=64, pattern=ORDER_ID_PATTERN)
    reason: str = Field(min_length=1, max_length=500, description="why (a case, a ticket)")
    until: AwareDatetime = Field(description="when the hold ends (at most ten years ahead)")


class LegalHoldOut(BaseModel):
    """A hold as ``deletion.holds.Hold`` holds it, field for field."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    tenant: str = Field(validation_alias="tenant_id")
    amazon_order_id: str
    reason: str
    held_by: str
    until: datetime = Field(validation_alias="held_until")
    created_at: datetime
    released_at: datetime | None


@router.post("/legal-holds", status_code=201, response_model=LegalHoldOut,
             responses=own_errors(404, 410, 422))
def place_legal_hold(
    body: LegalHoldIn,
    state: Annotated[RequestState, Depends(require(Action.HOLDS_PLACE))],
) -> LegalHoldOut:
    """Keep one order from retention and from deletion requests until ``until`` (404: no
    such order; 410: a deletion request has erased it already, its row not yet deleted)."""
    return LegalHoldOut.model_validate(holds.place(
        state.on_tenant(body.tenant), state.auditor, state.principal.id, body.tenant,
        body.amazon_order_id, body.reason, body.until))


@router.get("/legal-holds")
def list_legal_holds(
    state: Annotated[RequestState, Depends(require(Action.HOLDS_LIST))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[LegalHoldOut]]:
    """Every hold placed, newest first (released ones too: the record)."""
    found = holds.list_holds(state.runtime, state.auditor, limit)
    return {"legal_holds": [LegalHoldOut.model_validate(hold) for hold in found]}


@router.post("/legal-holds/{hold_id}/release", response_model=LegalHoldOut,
             responses=own_errors(404, 409, 422))
def release_legal_hold(
    hold_id: Annotated[str, HOLD_ID],
    state: Annotated[RequestState, Depends(require(Action.HOLDS_RELEASE))],
) -> LegalHoldOut:
    """End a hold now (409 if it was released already)."""
    rt = state.on_tenant(holds.tenant_of(state.runtime, hold_id))
    return LegalHoldOut.model_validate(holds.release(rt, state.auditor, state.principal.id,
                                                     hold_id))
