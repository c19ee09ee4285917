"""The outbox: notifications enqueued in the alert's own transaction, claimed one at a time by
a deliverer, and finished as delivered, retried later, or given up (the dead letter list).

**Enqueued with the alert.** ``monitoring.alerts.raise_alert`` calls ``enqueue`` inside the
transaction that inserts the alert: both commit or neither does, so an alert is never without
its notifications, and the unique key (alert, channel) enqueues each channel once.

**Claimed by a conditional UPDATE.** A deliverer reads the oldest due rows (a plain read,
outside any transaction), then takes one with::

    UPDATE alert_notifications SET claim_id = :new, claimed_until = :now + LEASE,
           attempts = attempts + 1
     WHERE id = :id AND status = 'pending' AND next_attempt_at <= :now
       AND (claimed_until IS NULL OR claimed_until <= :now)

The read is only a hint: the conditions are checked again by the statement that writes, so of
two deliverers that read the same row, one changes it and the other matches nothing (on
PostgreSQL the second ``UPDATE`` waits for the first to commit, re-reads the row and finds it
leased; SQLite's writers take turns). Only the deliverer holding the claim finishes the row
(``WHERE claim_id = :mine``). The ``alert-notifications`` job's runs do not overlap anyway
(``jobs.runner``); the claim keeps delivery right without relying on that.

**At least once.** The message is sent outside any transaction (a slow receiver must not hold
the database), and its success is recorded afterwards. A process that dies in between leaves
the row claimed; when the lease ends it is sent again. Receivers de-duplicate by the
notification id (the ``notification_id`` inside the webhook's signed body, never its unsigned
``X-SellerVault-Delivery`` header; the e-mail's ``Message-ID``).

**Retries.** A failed attempt is due again after ``BACKOFF`` (30 s, 2 min, 8 min, 32 min);
after ``ATTEMPTS`` attempts the row is ``dead``. Each attempt and each dead letter is a
security event (``notifications:deliver``, ``notifications:dead``), by the system.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Table, or_, select, update
from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import SYSTEM_ACTOR, Outcome, TargetType
from sellervault.config import Settings
from sellervault.notifications.errors import DeliveryError
from sellervault.notifications.models import NotificationRow
from sellervault.runtime import Runtime
from sellervault.store.upsert import insert_into

log = logging.getLogger("sellervault.notifications")

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
WEBHOOK, EMAIL = "webhook", "email"
BACKOFF = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=8),
           timedelta(minutes=32))
ATTEMPTS = len(BACKOFF) + 1
LEASE = timedelta(minutes=5)
"""How long a claim lasts: far longer than one attempt (each channel's attempt has an overall
deadline of seconds), so a row is sent twice only when its deliverer died."""

_TABLE = cast(Table, NotificationRow.__table__)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A notification this deliverer holds, for its ``attempt``-th attempt."""

    id: str
    alert_id: str
    channel: str
    attempt: int
    claim_id: str


def channels(settings: Settings) -> list[str]:
    """The channels configured now, in the order they are tried."""
    return ([WEBHOOK] if settings.webhook_configured else []) + (
        [EMAIL] if settings.email_configured else [])


def enqueue(session: Session, settings: Settings, alert_id: str, now: datetime) -> int:
    """One notification of ``alert_id`` per configured channel, due now, in the caller's
    transaction (the alert's); how many (none when notifications are off)."""
    rows = [{"id": "ntf_" + secrets.token_hex(12), "alert_id": alert_id, "channel": channel,
             "status": PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now}
            for channel in channels(settings)]
    if not rows:
        return 0
    session.execute(insert_into(session, _TABLE).values(rows).on_conflict_do_nothing(
        index_elements=[_TABLE.c.alert_id, _TABLE.c.channel]))
    return len(rows)


def _claimable(now: datetime) -> list[Any]:
    return [_TABLE.c.status == PENDING, _TABLE.c.next_attempt_at <= now,
            or_(_TABLE.c.claimed_until.is_(None), _TABLE.c.claimed_until <= now)]


def _due_rows(rt: Runtime, now: datetime, limit: int) -> list[Any]:
    """The oldest rows that look claimable (a hint: ``_take`` decides)."""
    with rt.store.snapshot() as connection:
        return list(connection.execute(
            select(_TABLE.c.id, _TABLE.c.alert_id, _TABLE.c.channel).where(*_claimable(now))
            .order_by(_TABLE.c.next_attempt_at, _TABLE.c.id).limit(limit)))


def _take(rt: Runtime, notification_id: str, claim_id: str, now: datetime) -> int | None:
    """Claim one row if it is still claimable; its attempt number, or None."""
    with rt.store.transaction() as session:
        taken = session.execute(
            update(_TABLE).where(_TABLE.c.id == notification_id, *_claimable(now))
            .values(claim_id=claim_id, claimed_until=now + LEASE,
                    attempts=_TABLE.c.attempts + 1)
            .returning(_TABLE.c.attempts)).first()
    return None if taken is None else int(taken.attempts)


def claim_next(rt: Runtime, scan: int = 10) -> Claimed | None:
    """Claim the oldest due notification that nobody else claims first; None when none is
    due. One at a time: a claim's lease runs while it is being sent, not while others are."""
    now = rt.clock.now()
    for row in _due_rows(rt, now, scan):
        claim_id = secrets.token_hex(8)
        attempt = _take(rt, row.id, claim_id, now)
        if attempt is not None:
            return Claimed(row.id, row.alert_id, row.channel, attempt, claim_id)
    return None


def _finish(session: Session, claimed: Claimed, **values: Any) -> bool:
    """Write the end of this attempt if the row is still this deliverer's (a lease that ran
    out may have been claimed again: the newer claim finishes it)."""
    done = cast(CursorResult[Any], session.execute(
        update(_TABLE).where(_TABLE.c.id == claimed.id, _TABLE.c.claim_id == claimed.claim_id,
                             _TABLE.c.status == PENDING)
        .values(claim_id=None, claimed_until=None, **values)
        .execution_options(synchronize_session=False)))
    return done.rowcount == 1


def delivered(rt: Runtime, claimed: Claimed) -> None:
    """The attempt succeeded: the row is done, and the attempt is an event."""
    with rt.store.transaction() as session:
        _finish(session, claimed, status=DELIVERED, finished_at=rt.clock.now())
        _auditor(rt).record(session, Action.NOTIFICATIONS_DELIVER, Outcome.SUCCESS,
                            target_type=TargetType.NOTIFICATION, target_id=claimed.id,
                            criteria=claimed.channel, count=claimed.attempt)


def failed(rt: Runtime, claimed: Claimed, error: DeliveryError) -> bool:
    """The attempt failed: due again after its backoff, or dead after the last attempt (an
    event of its own). Whether it is dead now."""
    now = rt.clock.now()
    dead = claimed.attempt >= ATTEMPTS
    values: dict[str, Any] = {"last_reason": error.reason.value, "last_status": error.status}
    if dead:
        values.update(status=DEAD, finished_at=now)
    else:
        values["next_attempt_at"] = now + BACKOFF[claimed.attempt - 1]
    auditor = _auditor(rt)
    with rt.store.transaction() as session:
        finished = _finish(session, claimed, **values)
        auditor.record(session, Action.NOTIFICATIONS_DELIVER, Outcome.FAILED,
                       target_type=TargetType.NOTIFICATION, target_id=claimed.id,
                       criteria=claimed.channel, count=claimed.attempt, reason=error.reason,
                       status=error.status)
        if dead and finished:
            auditor.record(session, Action.NOTIFICATIONS_DEAD, Outcome.FAILED,
                           target_type=TargetType.NOTIFICATION, target_id=claimed.id,
                           criteria=claimed.channel, count=claimed.attempt,
                           reason=error.reason)
    log.warning("notification %s (%s): attempt %d of %d failed (%s)%s", claimed.id,
                claimed.channel, claimed.attempt, ATTEMPTS, error.reason.value,
                "; given up: a dead letter" if dead else "")
    return dead and finished


def _auditor(rt: Runtime) -> Auditor:
    return Auditor(rt.audit, SYSTEM_ACTOR)
