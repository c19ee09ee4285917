"""Accounts and grants (role ``admin``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import Depends, Path
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sellervault.access.actions import Action
from sellervault.access.roles import TENANT_ID_PATTERN, Grant, Role
from sellervault.accounts import api_keys, grants, lifecycle, networks, reenrolment
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
    ends_at: datetime | None = None
    """When the account's access stops (set by an administrator, or by offboarding)."""
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
                   last_used_at=a.last_used_at, ends_at=a.ends_at,
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
    and lock are cleared). Its person signs in again. An account a canary locked is a
    security officer's to re-enable (403 ``security_officer_required`` for anyone else)."""
    lifecycle.enable(state.runtime, state.auditor, state.principal, account_id)
    return AccountStatus(id=account_id, status="active")


class ApiKeyOut(BaseModel):
    """An API key as it may be shown: its id and dates, never the key."""

    key_id: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class AccountDetailOut(AccountOut):
    networks: list[str]
    """The networks the account may be used from; empty: any the deployment admits."""
    api_keys: list[ApiKeyOut]


@router.get("/accounts/{account_id}", response_model=AccountDetailOut,
            responses=own_errors(404))
def show_account(
    account_id: Annotated[str, ACCOUNT_ID],
    state: Annotated[RequestState, Depends(require(Action.ACCOUNTS_READ))],
) -> AccountDetailOut:
    """One account: its status, end date, networks, grants and API keys (ids and dates)."""
    detail = accounts.show_account(state.runtime, state.auditor, account_id)
    a = detail.account
    return AccountDetailOut(
        id=a.id, kind=a.kind, name=a.name, status=a.status, created_at=a.created_at,
        last_used_at=a.last_used_at, ends_at=a.ends_at,
        grants=[GrantOut.of(g) for g in detail.grants],
        networks=a.allowed_networks.split(",") if a.allowed_networks else [],
        api_keys=[ApiKeyOut(key_id=k.key_id, created_at=k.created_at,
                            expires_at=k.expires_at, revoked_at=k.revoked_at)
                  for k in detail.api_keys])


class OffboardedOut(BaseModel):
    id: str
    status: Literal["disabled"]
    sessions_ended: int
    api_keys_revoked: int
    grants_removed: int


@router.post("/accounts/{account_id}/offboard", response_model=OffboardedOut,
             responses=own_errors(404, 409, 422))
def offboard_account(
    account_id: Annotated[str, ACCOUNT_ID],
    state: Annotated[RequestState, Depends(require(Action.ACCOUNTS_OFFBOARD))],
) -> OffboardedOut:
    """A leaver: the account is disabled with an end date of now, and every session, API
    key, enrolment token and recovery code of it ends and every grant goes, at once and on
    every server process. It stays in the listing (and the log) under its id."""
    done = lifecycle.offboard(state.runtime, state.auditor, state.principal, account_id)
    return OffboardedOut(id=account_id, status="disabled", sessions_ended=done.sessions,
                         api_keys_revoked=done.api_keys, grants_removed=done.grants)


class EndDateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ends_at: AwareDatetime | None = Field(
        description="when access stops (with a time zone, in the future); null clears it")


class EndDateOut(BaseModel):
    id: str
    ends_at: datetime | None


@router.put("/accounts/{account_id}/end-date", response_model=EndDateOut,
            responses=own_errors(404, 422))
def set_end_date(
    account_id: Annotated[str, ACCOUNT_ID],
    body: EndDateIn,
    state: Annotated[RequestState, Depends(require(Action.ACCOUNTS_END_DATE))],
) -> EndDateOut:
    """The moment the account's access stops (a contract's end, a leaver's last day): from
    then on its credentials are refused and the ``account-end-dates`` job disables it."""
    lifecycle.set_end_date(state.runtime, state.auditor, state.principal, account_id,
                           body.ends_at)
    return EndDateOut(id=account_id, ends_at=body.ends_at)


class NetworksIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    networks: list[Annotated[str, Field(max_length=64)]] = Field(
        max_length=networks.MAX_NETWORKS,
        description="CIDRs (e.g. 203.0.113.0/24); an empty list lifts the restriction")


class NetworksOut(BaseModel):
    id: str
    networks: list[str]


@router.put("/accounts/{account_id}/networks", response_model=NetworksOut,
            responses=own_errors(404, 422))
def set_networks(
    account_id: Annotated[str, ACCOUNT_ID],
    body: NetworksIn,
    state: Annotated[RequestState, Depends(require(Action.ACCOUNTS_NETWORKS))],
) -> NetworksOut:
    """The networks the account may be used from, inside the deployment's allowlist: a
    sign-in from elsewhere fails like a wrong password; its sessions and API keys are
    refused there (401)."""
    stored = networks.set_networks(state.runtime, state.auditor, state.principal, account_id,
                                   body.networks)
    return NetworksOut(id=account_id, networks=stored.split(",") if stored else [])


def _grant(item: GrantIn) -> Grant:
    return _grants([item])[0]


@router.post("/accounts/{account_id}/grants", status_code=201, response_model=GrantOut,
             responses=own_errors(404, 409, 422))
def add_grant(
    account_id: Annotated[str, ACCOUNT_ID],
    body: GrantIn,
    state: Annotated[RequestState, Depends(require(Action.GRANTS_ADD))],
) -> GrantOut:
    """Grant a role on a tenant (or on every tenant, ``*``, for the roles that allow it).
    Refused (422) when the account could not hold it beside its other grants (separation of
    duties), and (409) ``pii-reader`` for an existing service: create a service for it."""
    grant = _grant(body)
    grants.add(state.runtime, state.auditor, state.principal, account_id, grant)
    return GrantOut.of(grant)


@router.post("/accounts/{account_id}/grants/revoke", response_model=GrantOut,
             responses=own_errors(404, 409, 422))
def revoke_grant(
    account_id: Annotated[str, ACCOUNT_ID],
    body: GrantIn,
    state: Annotated[RequestState, Depends(require(Action.GRANTS_REVOKE))],
) -> GrantOut:
    """Take a grant away: from the next request on, on every server process. ``admin`` is
    never taken from the last active administrator (409)."""
    grant = _grant(body)
    grants.revoke(state.runtime, state.auditor, state.principal, account_id, grant)
    return GrantOut.of(grant)


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_hours: int = Field(
        default=24, ge=0, le=api_keys.MAX_OVERLAP // timedelta(hours=1),
        description="how long the service's current keys keep working beside the new one "
                    "(0: they stop now)")


class IssuedKeyOut(BaseModel):
    key_id: str
    api_key: str
    """Shown once: hand it to the service."""
    expires_at: datetime


@router.post("/accounts/{account_id}/api-keys", status_code=201, response_model=IssuedKeyOut,
             responses=own_errors(404, 409, 422))
def rotate_api_key(
    account_id: Annotated[str, ACCOUNT_ID],
    body: RotateIn,
    state: Annotated[RequestState, Depends(require(Action.API_KEYS_ROTATE))],
) -> IssuedKeyOut:
    """A new API key for a service; its other live keys stop after the overlap."""
    issued = api_keys.rotate(state.runtime, state.auditor, state.principal, account_id,
                             timedelta(hours=body.overlap_hours))
    return IssuedKeyOut(key_id=issued.key_id, api_key=issued.api_key,
                        expires_at=issued.expires_at)


class RevokedKeyOut(BaseModel):
    key_id: str
    revoked: bool


@router.post("/accounts/{account_id}/api-keys/{key_id}/revoke", response_model=RevokedKeyOut,
             responses=own_errors(404, 409, 422))
def revoke_api_key(
    account_id: Annotated[str, ACCOUNT_ID],
    key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")],
    state: Annotated[RequestState, Depends(require(Action.API_KEYS_REVOKE))],
) -> RevokedKeyOut:
    """End one API key now, on every server process."""
    api_keys.revoke(state.runtime, state.auditor, state.principal, account_id, key_id)
    return RevokedKeyOut(key_id=key_id, revoked=True)
