"""Approvals (role ``security-officer``): the second person for a service that may read PII
(``accounts.approvals``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Path
from pydantic import BaseModel

from sellervault.access.actions import Action
from sellervault.accounts import approvals
from sellervault.web.api.schemas import GrantOut
from sellervault.web.context import RequestState, api_router, require
from sellervault.web.openapi import own_errors

router = api_router("approvals")

ACCOUNT_ID_PATTERN = r"^(acc|svc)_[0-9a-f]{24}$"
AccountId = Annotated[str, Path(pattern=ACCOUNT_ID_PATTERN)]


class PendingOut(BaseModel):
    account_id: str
    kind: str
    name: str
    grants: list[GrantOut]
    created_by: str | None
    created_at: datetime


class Decision(BaseModel):
    account_id: str
    status: str


@router.get("/approvals")
def list_approvals(
    state: Annotated[RequestState, Depends(require(Action.APPROVALS_LIST))],
) -> dict[str, list[PendingOut]]:
    """Accounts waiting for a second person, with the grants they would get."""
    return {"approvals": [
        PendingOut(account_id=p.id, kind=p.kind, name=p.name,
                   grants=[GrantOut.of(g) for g in p.grants], created_by=p.created_by,
                   created_at=p.created_at)
        for p in approvals.list_pending(state.runtime, state.auditor)]}


@router.post("/approvals/{account_id}/approve", responses=own_errors(404, 409))
def approve(
    account_id: AccountId,
    state: Annotated[RequestState, Depends(require(Action.ACCOUNTS_APPROVE))],
) -> Decision:
    """The account's key works from now on; its creator cannot do this."""
    return _decide(state, account_id, approve=True)


@router.post("/approvals/{account_id}/reject", responses=own_errors(404, 409))
def reject(
    account_id: AccountId,
    state: Annotated[RequestState, Depends(require(Action.ACCOUNTS_REJECT))],
) -> Decision:
    """The account's key never works."""
    return _decide(state, account_id, approve=False)


def _decide(state: RequestState, account_id: str, *, approve: bool) -> Decision:
    officer = state.principal
    return Decision(account_id=account_id, status=approvals.decide(
        state.runtime, state.auditor, officer, account_id, approve=approve))
