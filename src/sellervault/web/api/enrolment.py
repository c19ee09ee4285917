"""Enrolment (public: the token is the credential): a person sets their own authenticator and
password (``accounts.enrolment``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from pydantic import BaseModel, ConfigDict, Field

from sellervault.access.actions import Action
from sellervault.accounts import enrolment
from sellervault.web.context import RequestState, api_router, require
from sellervault.web.openapi import own_errors

router = api_router("enrolment")


class StartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=128)


class StartOut(BaseModel):
    totp_secret: str
    """For the authenticator app (base32). A new one at each start; the last one counts."""


class FinishIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=128)
    new_password: str = Field(min_length=1, max_length=1024)
    totp: str = Field(min_length=6, max_length=8)


class FinishOut(BaseModel):
    recovery_codes: list[str]
    """Ten codes, each usable once in place of a TOTP code; shown only now."""


@router.post("/enrolment/start", response_model=StartOut, responses=own_errors(401))
def start(
    body: StartIn,
    state: Annotated[RequestState, Depends(require(Action.ENROLMENT_START))],
) -> StartOut:
    return StartOut(totp_secret=enrolment.start(state.runtime, state.auditor, body.token))


@router.post("/enrolment/finish", response_model=FinishOut, responses=own_errors(401, 422))
def finish(
    body: FinishIn,
    state: Annotated[RequestState, Depends(require(Action.ENROLMENT_FINISH))],
) -> FinishOut:
    codes = enrolment.finish(state.runtime, state.auditor, body.token, body.new_password,
                             body.totp)
    return FinishOut(recovery_codes=codes)
