"""The security log, read-only (``security-officer``, ``auditor``). No API edits or deletes."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

from fastapi import Depends, Query
from pydantic import AwareDatetime

from sellervault.access.actions import Action
from sellervault.access.roles import TENANT_ID_PATTERN
from sellervault.audit import reading
from sellervault.audit.events import Outcome
from sellervault.web.context import RequestState, api_router, require

router = api_router("audit")
MAX_EVENT_ID = 2**63 - 1  # the column's range (BIGINT): past it the database refuses


def _event_time(moment: AwareDatetime | None) -> str | None:
    """A time in the events' own format (UTC, microseconds, "Z"), which sorts as it reads."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


@router.get("/audit/events")
def list_events(
    state: Annotated[RequestState, Depends(require(Action.AUDIT_READ))],
    after: Annotated[int, Query(ge=0, le=MAX_EVENT_ID,
                                description="the cursor: events after this one")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    since: Annotated[AwareDatetime | None, Query(description="from this time on")] = None,
    until: Annotated[AwareDatetime | None, Query(description="before this time")] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[Action | None, Query()] = None,
    outcome: Annotated[Outcome | None, Query()] = None,
    tenant: Annotated[str | None, Query(max_length=64, pattern=TENANT_ID_PATTERN)] = None,
) -> dict[str, Any]:
    """A page of the log, in chain order, matching every filter given; ``next_cursor`` is
    the ``after`` of the next page (null: this was the last)."""
    matching = reading.EventFilter(since=_event_time(since), until=_event_time(until),
                                   actor_id=actor, action=action, outcome=outcome,
                                   tenant_id=tenant)
    page = reading.read_events(state.runtime.store, state.auditor, after, limit, matching)
    return {"events": page.events, "next_cursor": page.next_cursor}
