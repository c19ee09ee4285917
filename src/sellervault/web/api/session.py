"""Sign-in for people: password and TOTP give a bearer token; password change."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from sellervault.access.actions import Action
from sellervault.accounts import lifecycle
from sellervault.accounts import service as accounts
from sellervault.web.api.schemas import GrantOut
from sellervault.web.context import RequestState, api_router, require
from sellervault.web.openapi import own_errors

router = api_router("session")


class SessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    totp: str = Field(min_length=6, max_length=32,
                      description="the authenticator's code, or a recovery code")


class SessionResponse(BaseModel):
    token: str
    expires_at: datetime


class PasswordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=320)
    current_password: str = Field(min_length=1, max_length=1024)
    totp: str = Field(min_length=6, max_length=32,
                      description="the authenticator's code, or a recovery code")
    new_password: str = Field(min_length=1, max_length=1024)


@router.post("/session", response_model=SessionResponse,
             responses=own_errors(401, 403, 429))
def create_session(
    body: SessionRequest,
    state: Annotated[RequestState, Depends(require(Action.SESSION_CREATE))],
) -> SessionResponse:
    issued = accounts.login(state.runtime, state.auditor, email=body.email,
                            password=body.password, totp_code=body.totp)
    return SessionResponse(token=issued.token, expires_at=issued.expires_at)


class WhoAmI(BaseModel):
    account_id: str
    kind: str
    grants: list[GrantOut]


@router.get("/session", response_model=WhoAmI)
def who_am_i(
    state: Annotated[RequestState, Depends(require(Action.SESSION_READ))],
) -> WhoAmI:
    """The account behind the bearer token and its grants (clients check a token with it)."""
    principal = state.principal
    return WhoAmI(account_id=principal.id, kind=principal.kind,
                  grants=[GrantOut.of(g) for g in principal.grants])


@router.delete("/session", status_code=204, responses=own_errors(401, 403))
def sign_out(
    state: Annotated[RequestState, Depends(require(Action.SESSION_DELETE))],
) -> Response:
    """Sign out: the session ends now, on every server process (an API key cannot sign
    out: an administrator revokes it)."""
    assert state.token is not None  # the guard authenticated it
    lifecycle.sign_out(state.runtime, state.auditor, state.principal, state.token)
    return Response(status_code=204)


@router.post("/password", status_code=204, responses=own_errors(401, 409, 422, 429))
def change_password(
    body: PasswordRequest,
    state: Annotated[RequestState, Depends(require(Action.PASSWORD_CHANGE))],
) -> Response:
    """Change one's own password (current password and code): at most once a day unless it
    expired or must be changed; every rule of a new password; every session of the account
    ends."""
    accounts.change_password(state.runtime, state.auditor, email=body.email,
                             current_password=body.current_password, totp_code=body.totp,
                             new_password_value=body.new_password)
    return Response(status_code=204)
