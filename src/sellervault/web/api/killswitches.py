"""Kill switches (role ``operator``): stop every PII reveal, one tenant or one account now
(``access.killswitches``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from sellervault.access import killswitches
from sellervault.access.actions import Action
from sellervault.access.killswitches import Scope
from sellervault.web.context import RequestState, api_router, require
from sellervault.web.openapi import own_errors

router = api_router("killswitches")


class SwitchIn(BaseModel):
    """Which switch: ``reveals`` (no subject: every PII reveal and search), ``tenant`` (a
    tenant id) or ``account`` (an account id)."""

    model_config = ConfigDict(extra="forbid")
    scope: Scope
    subject: str | None = Field(default=None, max_length=64)


class SwitchOut(BaseModel):
    scope: str
    subject: str
    set_by: str | None
    set_at: datetime


@router.post("/killswitches/set", status_code=204, responses=own_errors(409, 422))
def set_switch(
    body: SwitchIn,
    state: Annotated[RequestState, Depends(require(Action.KILLSWITCH_SET))],
) -> Response:
    """Set a switch: what it stops is refused (403 ``kill_switch``) on every server process
    within half a second, until it is cleared."""
    killswitches.set_switch(state.runtime, state.auditor, state.principal, body.scope,
                            body.subject)
    return Response(status_code=204)


@router.post("/killswitches/clear", status_code=204, responses=own_errors(404, 422))
def clear_switch(
    body: SwitchIn,
    state: Annotated[RequestState, Depends(require(Action.KILLSWITCH_CLEAR))],
) -> Response:
    killswitches.clear_switch(state.runtime, state.auditor, body.scope, body.subject)
    return Response(status_code=204)


@router.get("/killswitches")
def list_switches(
    state: Annotated[RequestState, Depends(require(Action.KILLSWITCH_LIST))],
) -> dict[str, list[SwitchOut]]:
    rows = killswitches.list_switches(state.runtime, state.auditor)
    return {"killswitches": [SwitchOut(scope=r.scope, subject=r.subject, set_by=r.set_by,
                                       set_at=r.set_at) for r in rows]}
