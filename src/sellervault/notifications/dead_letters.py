"""The outbox as a security officer sees it: its notifications by status (the dead letter
list above all: alerts that reached nobody after the last attempt), and a dead letter sent
again. Rows hold ids, a channel, counts, reason codes and times: never a message, an
address or a URL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Outcome, Reason, TargetType
from sellervault.notifications.models import NotificationRow
from sellervault.notifications.outbox import DEAD, PENDING
from sellervault.runtime import Runtime


class NotificationError(Exception):
    code = Reason.NOT_FOUND
    status = 404


class NoSuchNotificationError(NotificationError):
    def __init__(self) -> None:
        super().__init__("no such notification")


class NotDeadError(NotificationError):
    code = Reason.NOTIFICATION_STATE
    status = 409

    def __init__(self) -> None:
        super().__init__("only a dead letter is retried (this one is pending or delivered)")


@dataclass(frozen=True)
class Letter:
    id: str
    alert_id: str
    channel: str
    status: str
    attempts: int
    last_reason: str | None
    last_code: int | None
    created_at: datetime
    next_attempt_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> Letter:
        return cls(row.id, row.alert_id, row.channel, row.status, row.attempts,
                   row.last_reason, row.last_status, row.created_at, row.next_attempt_at,
                   row.finished_at)


def list_notifications(rt: Runtime, auditor: Auditor, status: str = DEAD,
                       limit: int = 100) -> list[Letter]:
    """The newest first."""
    with rt.store.transaction() as session:
        found = [Letter.of(row) for row in session.scalars(
            select(NotificationRow).where(NotificationRow.status == status)
            .order_by(NotificationRow.created_at.desc(), NotificationRow.id.desc())
            .limit(limit))]
        auditor.record(session, Action.NOTIFICATIONS_LIST, Outcome.SUCCESS,
                       target_type=TargetType.NOTIFICATION, criteria=status,
                       count=len(found))
    return found


def retry(rt: Runtime, auditor: Auditor, notification_id: str) -> Letter:
    """A dead letter back in the outbox, due now, its attempts counted afresh; the
    ``alert-notifications`` job sends it within 15 seconds. One conditional update: two
    retries at once send it once."""
    now = rt.clock.now()
    with rt.store.transaction() as session:
        moved = session.execute(update(NotificationRow).where(
            NotificationRow.id == notification_id, NotificationRow.status == DEAD).values(
            status=PENDING, attempts=0, next_attempt_at=now, claim_id=None,
            claimed_until=None, finished_at=None))
        row = session.get(NotificationRow, notification_id)
        if row is None:
            raise NoSuchNotificationError()
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise NotDeadError()
        auditor.record(session, Action.NOTIFICATIONS_RETRY, Outcome.SUCCESS,
                       target_type=TargetType.NOTIFICATION, target_id=notification_id)
        return Letter.of(row)
