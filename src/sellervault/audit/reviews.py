"""Reviews of the security log: the policy's "review the logs every 14 days", recorded.

A security officer or an auditor who has read the log records how far they read
(``up_to_seq``): each review goes further than the one before, and names an event that
exists. Reviews are numbered; the number is the table's primary key, so of two reviews
recorded at the same moment (both read the same last review), the second one's insert
collides and is refused (409), on PostgreSQL's READ COMMITTED as on SQLite.

The ``audit-review-reminder`` job (daily) raises a ``log-review-due`` alert while the last
review is 14 days old or more (with none yet: 14 days after the log's first event).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.access.roles import Principal
from sellervault.audit.auditor import Auditor
from sellervault.audit.errors import ReviewBeyondTheLogError, ReviewStateError
from sellervault.audit.events import Outcome, TargetType
from sellervault.audit.log import event_time
from sellervault.audit.models import ChainHead, EventRow, ReviewRow
from sellervault.audit.writing import HEAD_ID
from sellervault.monitoring import alerts
from sellervault.runtime import Runtime

REVIEW_EVERY = timedelta(days=14)
LOG_REVIEW_DUE = "log-review-due"
_LAST_REVIEW = select(ReviewRow).order_by(ReviewRow.number.desc()).limit(1)


@dataclass(frozen=True, slots=True)
class Review:
    number: int
    reviewer_id: str
    up_to_seq: int
    reviewed_at: str


def _review(row: Any) -> Review:
    return Review(row.number, row.reviewer_id, row.up_to_seq, row.reviewed_at)


def _last_review(session: Session) -> ReviewRow | None:
    """The review every new one must go further than (read without a lock: the number is
    what keeps two that read the same one from both landing, see ``_number_after``)."""
    return session.scalars(_LAST_REVIEW).first()


def _number_after(last: ReviewRow | None) -> int:
    """The guard: a review's number is the one after the review it read. Two reviews that
    read the same last one take the same number, and the second insert collides on the
    primary key (on PostgreSQL it waits for the first to commit, then fails), so no review
    lands that was checked against a review which is no longer the last."""
    return (last.number if last is not None else 0) + 1


def record(rt: Runtime, auditor: Auditor, reviewer: Principal, up_to_seq: int) -> Review:
    """Record that ``reviewer`` reviewed the log up to event ``up_to_seq``."""
    try:
        with rt.store.transaction() as session:
            head = session.get(ChainHead, HEAD_ID)
            if head is None or up_to_seq > head.seq:
                raise ReviewBeyondTheLogError()
            last = _last_review(session)
            if last is not None and up_to_seq <= last.up_to_seq:
                raise ReviewStateError()
            row = ReviewRow(number=_number_after(last), reviewer_id=reviewer.id,
                            up_to_seq=up_to_seq, reviewed_at=rt.audit.occurred_at())
            session.add(row)
            session.flush()  # the number taken, or the collision, now
            auditor.record(session, Action.AUDIT_REVIEW, Outcome.SUCCESS,
                           target_type=TargetType.SECURITY_EVENT, target_id=str(up_to_seq),
                           count=row.number)
            return _review(row)
    except IntegrityError:  # another review took the number meanwhile
        raise ReviewStateError() from None


def list_reviews(rt: Runtime, auditor: Auditor, limit: int = 100) -> list[Review]:
    """The newest reviews first; the read is an ``audit:read`` event."""
    with rt.store.transaction() as session:
        found = [_review(row) for row in session.scalars(
            select(ReviewRow).order_by(ReviewRow.number.desc()).limit(limit))]
        auditor.record(session, Action.AUDIT_READ, Outcome.SUCCESS,
                       target_type=TargetType.SECURITY_EVENT, count=len(found))
    return found


def remind(rt: Runtime) -> int:
    """The ``audit-review-reminder`` job: a ``log-review-due`` alert (low) when the log has
    gone unreviewed 14 days; 1 if one was raised now, else 0. A review counts only as of its
    own event in the chain (``_vouched_time``): the reviews table is not chained, and a row
    written into it by hand must not silence the reminder."""
    now = rt.clock.now()
    with rt.store.transaction() as session:
        last = _last_review(session)
        if last is None:
            since = session.scalar(select(EventRow.occurred_at).order_by(EventRow.seq).limit(1))
            if since is None:
                return 0  # (an empty log: nothing to review yet)
        else:
            since = _vouched_time(session, last)
    if since is not None and now - datetime.fromisoformat(since.replace("Z", "+00:00")) \
            < REVIEW_EVERY:
        return 0
    raised = alerts.raise_alert(rt, LOG_REVIEW_DUE, "low", "service", None, event_time(now))
    return 0 if raised is None else 1


def _vouched_time(session: Session, review: ReviewRow) -> str | None:
    """When ``review`` was recorded, as its ``audit:review`` event says (written in the same
    transaction, after the event it names: the walk starts there), or None when no such
    event exists. The event is chained: forging one fails ``audit verify``."""
    found: str | None = session.scalar(select(EventRow.occurred_at).where(
        EventRow.seq > review.up_to_seq, EventRow.action == Action.AUDIT_REVIEW.value,
        EventRow.target_id == str(review.up_to_seq), EventRow.count == review.number)
        .order_by(EventRow.seq).limit(1))
    return found
