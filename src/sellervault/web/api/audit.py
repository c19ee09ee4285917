"""The security log, read-only (``security-officer``, ``auditor``). No API edits or deletes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query

from sellervault.access.actions import Action
from sellervault.audit import reading
from sellervault.web.context import RequestState, api_router, require

router = api_router("audit")
MAX_EVENT_ID = 2**63 - 1  # the column's range (BIGINT): past it the database refuses


@router.get("/audit/events")
def list_events(
    state: Annotated[RequestState, Depends(require(Action.AUDIT_READ))],
    after: Annotated[int, Query(ge=0, le=MAX_EVENT_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    return {"events": reading.read_events(state.runtime.store, state.auditor, after, limit)}
