"""The security log, read-only (``security-officer``, ``auditor``): read a page at a time,
exported as a stream for a SIEM, its reviews recorded. No API edits or deletes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt

from sellervault.access.actions import Action
from sellervault.access.roles import TENANT_ID_PATTERN
from sellervault.audit import exporting, reading, reviews
from sellervault.audit.events import Outcome
from sellervault.audit.log import event_time
from sellervault.crypto.pseudonyms import PATTERN as PSEUDONYM
from sellervault.web.context import RequestState, api_router, require
from sellervault.web.openapi import own_errors

router = api_router("audit")
MAX_EVENT_ID = 2**63 - 1  # the column's range (BIGINT): past it the database refuses


ISO_TIME = (r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d"
            r"(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$")
"""An ISO 8601 time with its zone, and nothing else (pydantic's datetime also takes a bare
number as a Unix time, which a reader would not mean)."""


def _in_event_format(text: str) -> str:
    """The time in the events' own format (``event_time``: UTC, which sorts as it reads).
    A ValueError (a 422) for a day the month lacks, and for a time that is no longer within
    years 1 to 9999 once in UTC (0001-01-01T00:00:00+01:00)."""
    if not re.fullmatch(ISO_TIME, text):  # (the Query's pattern is checked on the result)
        raise ValueError("an ISO 8601 time with its zone is expected")
    try:
        return event_time(datetime.fromisoformat(text))
    except OverflowError:
        raise ValueError("the time is out of range once in UTC") from None


EventTime = Annotated[str, AfterValidator(_in_event_format)]


def event_filter(
    since: Annotated[EventTime | None, Query(pattern=ISO_TIME, max_length=40,
                                             description="from this time on")] = None,
    until: Annotated[EventTime | None, Query(pattern=ISO_TIME, max_length=40,
                                             description="before this time")] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[Action | None, Query()] = None,
    outcome: Annotated[Outcome | None, Query()] = None,
    tenant: Annotated[str | None, Query(max_length=64, pattern=TENANT_ID_PATTERN)] = None,
    buyer: Annotated[str | None, Query(pattern=PSEUDONYM,
                                       description="a buyer's pseudonym (byr_...)")] = None,
) -> reading.EventFilter:
    """The filters the log is read and exported with (one declaration for both routes, so
    that an export takes exactly what a read takes)."""
    return reading.EventFilter(since=since, until=until,
                               actor_id=actor, action=action, outcome=outcome,
                               tenant_id=tenant, buyer=buyer)


Filters = Annotated[reading.EventFilter, Depends(event_filter)]


@router.get("/audit/events")
def list_events(
    state: Annotated[RequestState, Depends(require(Action.AUDIT_READ))],
    matching: Filters,
    after: Annotated[int, Query(ge=0, le=MAX_EVENT_ID,
                                description="the cursor: events after this one")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """A page of the log, in chain order, matching every filter given; ``next_cursor`` is
    the ``after`` of the next page (null: this was the last)."""
    page = reading.read_events(state.runtime.store, state.auditor, after, limit, matching)
    return {"events": page.events, "next_cursor": page.next_cursor}


@router.get("/audit/export", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}},
                             "description": "one event a line, in chain order"}})
def export_events(
    state: Annotated[RequestState, Depends(require(Action.AUDIT_EXPORT))],
    matching: Filters,
    form: Annotated[exporting.ExportFormat, Query(
        alias="format", description="jsonl: events as /audit/events gives them; ocsf: "
                                    "OCSF 1.3.0")] = exporting.ExportFormat.JSONL,
    after: Annotated[int, Query(ge=0, le=MAX_EVENT_ID,
                                description="the events after this one: the last export's "
                                            "X-SellerVault-Export-Through")] = 0,
) -> StreamingResponse:
    """The log for a SIEM, streamed, up to the last event when the export began: one
    ``audit:export`` event (with the count) for all of it. The headers say how many events
    it holds and the last one's seq, so a client knows whether it got all of them."""
    export = exporting.begin(state.runtime.store, state.auditor, matching, form, after)
    return StreamingResponse(
        exporting.chunks(state.runtime.store, export), media_type="application/x-ndjson",
        headers={exporting.COUNT_HEADER: str(export.count),
                 exporting.THROUGH_HEADER: str(export.through_seq)})


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    up_to_seq: StrictInt = Field(ge=1, le=MAX_EVENT_ID, description="the last event reviewed")


class ReviewOut(BaseModel):
    number: int
    reviewer_id: str
    up_to_seq: int
    reviewed_at: str

    @classmethod
    def of(cls, review: reviews.Review) -> ReviewOut:
        return cls(number=review.number, reviewer_id=review.reviewer_id,
                   up_to_seq=review.up_to_seq, reviewed_at=review.reviewed_at)


@router.post("/audit/reviews", status_code=201, response_model=ReviewOut,
             responses=own_errors(409, 422))
def record_review(
    body: ReviewIn,
    state: Annotated[RequestState, Depends(require(Action.AUDIT_REVIEW))],
) -> ReviewOut:
    """Record that you reviewed the log up to ``up_to_seq`` (further than the last review,
    an event that exists); the policy asks for one every 14 days."""
    return ReviewOut.of(reviews.record(state.runtime, state.auditor, state.principal,
                                       body.up_to_seq))


@router.get("/audit/reviews")
def list_reviews(
    state: Annotated[RequestState, Depends(require(Action.AUDIT_READ))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[ReviewOut]]:
    """The newest reviews first: who, up to which event, when."""
    return {"reviews": [ReviewOut.of(review) for review in
                        reviews.list_reviews(state.runtime, state.auditor, limit)]}
