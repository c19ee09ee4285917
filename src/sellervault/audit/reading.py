"""Reading the security log: pages of events for a reader, whose read is itself an event.

A page is the events after a cursor (a sequence number), in chain order, that match every
filter given: a time range, the actor, the action, the outcome, the tenant, the buyer's
pseudonym. The next page
starts after the last event of this one. The events table has no secondary index (each
would cost every request's write), so a filter is a scan in chain order from the cursor,
stopping at the page's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.chain import CHAINED_FIELDS
from sellervault.audit.events import Outcome, TargetType
from sellervault.audit.models import EventRow
from sellervault.store.engine import Store


def count_events(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(EventRow)) or 0


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What a reader asks for; None: anything. Times are the events' own format (UTC,
    microseconds, "Z"), which sorts as it reads."""

    since: str | None = None
    until: str | None = None
    actor_id: str | None = None
    action: Action | None = None
    outcome: Outcome | None = None
    tenant_id: str | None = None
    buyer: str | None = None
    """A buyer's pseudonym (``crypto.pseudonyms``): the events about that buyer."""

    def where(self) -> list[Any]:
        conditions: list[Any] = []
        if self.since is not None:
            conditions.append(EventRow.occurred_at >= self.since)
        if self.until is not None:
            conditions.append(EventRow.occurred_at < self.until)
        for column, value in ((EventRow.actor_id, self.actor_id),
                              (EventRow.action, self.action),
                              (EventRow.outcome, self.outcome),
                              (EventRow.tenant_id, self.tenant_id),
                              (EventRow.buyer, self.buyer)):
            if value is not None:
                conditions.append(column == str(value))
        return conditions


@dataclass(frozen=True, slots=True)
class Page:
    events: list[dict[str, Any]]
    next_cursor: int | None
    """Where the next page starts (``after``); None when this page was the last."""


def event_fields(row: EventRow) -> dict[str, Any]:
    """An event as readers get it: every field the MAC covers, its MAC (``hash``) and the
    previous event's (``prev_hash``), so that a copy of consecutive events (an export) can
    be checked link by link by whoever holds the log key."""
    return {**{name: getattr(row, name) for name in CHAINED_FIELDS},
            "prev_hash": row.prev_hash, "hash": row.hash}


def list_events(session: Session, after_seq: int = 0, limit: int = 100,
                matching: EventFilter | None = None) -> list[EventRow]:
    query = select(EventRow).where(EventRow.seq > after_seq)
    if matching is not None:
        query = query.where(*matching.where())
    return list(session.scalars(query.order_by(EventRow.seq).limit(limit)))


def read_events(store: Store, auditor: Auditor, after_seq: int = 0, limit: int = 100,
                matching: EventFilter | None = None) -> Page:
    """A page of the log for a reader; the read itself is an event."""
    with store.transaction() as session:
        rows = list_events(session, after_seq=after_seq, limit=limit, matching=matching)
        auditor.record(session, Action.AUDIT_READ, Outcome.SUCCESS,
                       target_type=TargetType.SECURITY_EVENT, count=len(rows))
        events = [event_fields(row) for row in rows]
    return Page(events, rows[-1].seq if len(rows) == limit else None)
