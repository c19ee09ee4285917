"""Accounts and grants (role ``admin``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from sellervault.access.actions import Action
from sellervault.access.roles import TENANT_ID_PATTERN, Grant, Role
from sellervault.accounts import lifecycle, reenrolment
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import AccountRequestError
from sellervault.web.api.schemas import GrantOut
from sellervault.web.context import RequestState, api_router, require
from sellervault.web.openapi import own_errors

router = api_router("accounts")


GRANT_TENANT_PATTERN = r"^(\*|" + TENANT_ID_PATTERN.removeprefix("^").removesuffix("$") + ")$"


class ServiceWideGrantIn(BaseModel):
    """A role whose actions are service-wide (``access.roles.GLOBAL_ROLES``): on every
    tenant."""

    model_config = ConfigDict(extra="forbid")
    role: Literal[Role.ADMIN, Role.OPERATOR, Role.SECURITY_OFFICER, Role.AUDITOR]
    tenant: Literal["*"]


class TenantGrantIn(BaseModel):
    """A role on one tenant, or on every tenant (``*``)."""

    model_config = ConfigDict(extra="forbid")
    role: Literal[Role.ANALYST, Role.PII_READER, Role.INGEST]
    tenant: str = Field(max_length=64, pattern=GRANT_TENANT_PATTERN,
                        description="a tenant id, or '*' for every tenant")


GrantIn = Annotated[ServiceWideGrantIn | TenantGrantIn, Field(discriminator="role")]


class PersonIn(BaseModel):
    """A person: one named human, signing in with an email, a password and TOTP."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["person"]
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320)
    grants: list[GrantIn] = Field(default_factory=list, max_length=50)


class ServiceIn(BaseModel):
    """A service: a program with an API key, and no email."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["service"]
    name: str = Field(min_length=1, max_length=200)
    grants: list[GrantIn] = Field(default_factory=list, max_length=50)


AccountIn = Annotated[PersonIn | ServiceIn, Field(discriminator="kind")]


class AccountCreated(BaseModel):
    id: str
    enrolment_token: str | None = None
    """A person's: hand it to them; they enrol with it once, within ``expires_at``."""
    expires_at: datetime | None = None
    api_key: str | None = None
    status: str | None = None
    """A service's: ``pending`` (holds pii-reader: its key works once a security officer
    approves it) or ``active``."""


class AccountOut(BaseModel):
    id: str
    kind: str
    name: str
    status: str
    created_at: datetime
    last_used_at: datetime | None
    grants: list[GrantOut]


def _grants(items: list[GrantIn]) -> list[Grant]:
    try:
        return [Grant(item.role, item.tenant) for item in items]
    except ValueError as exc:
        raise AccountRequestError(str(exc)) from None


@router.post("/accounts", status_code=201, response_model=AccountCreated,
             response_model_exclude_none=True, responses=own_errors(409))
def create_account(
    body: AccountIn,
    state: Annotated[RequestState, Depends(require(Action.ACCOUNTS_CREATE))],
) -> AccountCreated:
    admin = state.principal
    grants = _grants(body.grants)
    if isinstance(body, PersonIn):
        person = accounts.create_person(state.runtime, state.auditor, admin,
                                        email=body.email, name=body.name, grants=grants)
        return AccountCreated(id=person.id, enrolment_token=person.enrolment_token,
                              expires_at=person.expires_at)
    service = accounts.create_service(state.runtime, state.auditor, admin,
                                      name=body.name, grants=grants)
    return AccountCreated(id=service.id, api_key=service.api_key, status=service.status)


@router.get("/accounts")
def list_accounts(
    state: Annotated[RequestState, Depends(require(Action.ACCOUNTS_LIST))],
) -> dict[str, list[AccountOut]]:
    rows = accounts.list_accounts(state.runtime, state.auditor)
    return {"accounts": [
        AccountOut(id=a.id, kind=a.kind, name=a.name, status=a.status, created_at=a.created_at,
                   last_used_at=a.last_used_at,
                   grants=[GrantOut.of(g) for g in grants])
        for a, grants in rows
    ]}


class AccountStatus(BaseModel):
    id: str
    status: str


ACCOUNT_ID = Path(max_length=32, pattern=r"^(acc|svc)_[0-9a-f]{24}$")


@router.post("/accounts/{account_id}/disable", response_model=AccountStatus,
             responses=own_errors(404, 409, 422))
def disable_account(
    account_id: Annotated[str, ACCOUNT_ID],
    state: Annotated[RequestState, Depends(require(Action.ACCOUNTS_DISABLE))],
) -> AccountStatus:
    """Disable an account: its sessions end and its credentials are refused from the next
    request on, on every server process (a leaver, a suspected compromise)."""
    lifecycle.disable(state.runtime, state.auditor, state.principal, account_id)
    return AccountStatus(id=account_id, status="disabled")


class Reenrolment(BaseModel):
    id: str
    enrolment_token: str
    expires_at: datetime


@router.post("/accounts/{account_id}/enrolment", status_code=201, response_model=Reenrolment,
             responses=own_errors(404, 409, 422))
def reenrol_account(
    account_id: Annotated[str, ACCOUNT_ID],
    state: Annotated[RequestState, Depends(require(Action.ACCOUNTS_REENROL))],
) -> Reenrolment:
    """A person who lost their authenticator enrols again: a new enrolment token (72 hours,
    once) to hand over; the account's sessions, recovery codes and earlier tokens end now,
    and it cannot sign in until the person has set a new authenticator and password."""
    issued = reenrolment.reenrol(state.runtime, state.auditor, state.principal, account_id)
    return Reenrolment(id=account_id, enrolment_token=issued.token,
                       expires_at=issued.expires_at)


@router.post("/accounts/{account_id}/enable", response_model=AccountStatus,
             responses=own_errors(404, 409))
def enable_account(
    account_id: Annotated[str, ACCOUNT_ID],
    state: Annotated[RequestState, Depends(require(Action.ACCOUNTS_ENABLE))],
) -> AccountStatus:
    """Re-enable a disabled account (also one disabled by ten failed sign-ins, whose count
    and lock are cleared). Its person signs in again."""
    lifecycle.enable(state.runtime, state.auditor, state.principal, account_id)
    return AccountStatus(id=account_id, status="active")
