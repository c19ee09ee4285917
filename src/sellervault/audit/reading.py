"""Reading the security log: pages of events for a reader, whose read is itself an event."""

from __future__ import annotations

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


def list_events(session: Session, after_seq: int = 0, limit: int = 100) -> list[EventRow]:
    return list(session.scalars(
        select(EventRow).where(EventRow.seq > after_seq).order_by(EventRow.seq).limit(limit)
    ))




def read_events(store: Store, auditor: Auditor, after_seq: int = 0,
                limit: int = 100) -> list[dict[str, Any]]:
    """A page of the log for a reader; the read itself is an event."""
    with store.transaction() as session:
        rows = list_events(session, after_seq=after_seq, limit=limit)
        auditor.record(session, Action.AUDIT_READ, Outcome.SUCCESS,
                       target_type=TargetType.SECURITY_EVENT, count=len(rows))
        return [{**{name: getattr(row, name) for name in CHAINED_FIELDS}, "hash": row.hash}
                for row in rows]
