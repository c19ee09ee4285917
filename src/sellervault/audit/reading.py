"""Reading the security log: pages of events for a reader, whose read is itself an event.

A page is the events after a cursor (a sequence number), in chain order, that match every
filter given: a time range, the actor, the action, the outcome, the tenant, the buyer's
pseudonym. The next page
starts after the last event of this one. The events table has no secondary index (each
would cost every request's write), so a filter is a scan in chain order from the cursor,
stopping at the page's size.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
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


def event_fields(row: Any) -> dict[str, Any]:
    """An event as readers get it: every field the MAC covers, its MAC (``hash``) and the
    previous event's (``prev_hash``), so that a copy of consecutive events (an export) can
    be checked link by link by whoever holds the log key."""
    return {**{name: getattr(row, name) for name in CHAINED_FIELDS},
            "prev_hash": row.prev_hash, "hash": row.hash}


def _page_query(after_seq: int, limit: int, matching: EventFilter | None) -> Any:
    query = select(EventRow).where(EventRow.seq > after_seq)
    if matching is not None:
        query = query.where(*matching.where())
    return query.order_by(EventRow.seq).limit(limit)


def list_events(session: Session, after_seq: int = 0, limit: int = 100,
                matching: EventFilter | None = None) -> list[EventRow]:
    return list(session.scalars(_page_query(after_seq, limit, matching)))


def filter_names(matching: EventFilter | None, after_seq: int = 0) -> str:
    """The names of the filters given, the cursor first (``after,action,since``): what a
    read or an export records of what was asked, never the values (an actor's id, a
    time); the buyer's pseudonym, the one value that says whom a reader looked for, is
    the event's own ``buyer`` field."""
    given = ["after"] if after_seq else []
    if matching is not None:
        given += [field.name for field in fields(matching)
                  if getattr(matching, field.name) is not None]
    return ",".join(given)


def read_events(store: Store, auditor: Auditor, after_seq: int = 0, limit: int = 100,
                matching: EventFilter | None = None) -> Page:
    """A page of the log for a reader; the read itself is an event, which names the
    filters used and the buyer looked for, and is committed before the page is given out.
    The page is read from a snapshot (a filtered read is a scan: on SQLite a write
    transaction would hold every writer for as long as it lasts)."""
    with store.snapshot() as connection:
        rows = connection.execute(_page_query(after_seq, limit, matching)).all()
    events = [event_fields(row) for row in rows]
    with store.transaction() as session:
        auditor.record(session, Action.AUDIT_READ, Outcome.SUCCESS,
                       target_type=TargetType.SECURITY_EVENT, count=len(rows),
                       target_id=str(after_seq) if after_seq else None,
                       criteria=filter_names(matching, after_seq) or None,
                       buyer=matching.buyer if matching is not None else None)
    return Page(events, rows[-1].seq if len(rows) == limit else None)
