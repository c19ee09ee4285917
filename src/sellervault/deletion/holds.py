"""Legal holds: an order kept from retention (``deletion.retention``) until a date, for a
stated reason, by a security officer; each placed and released hold is an event and stays in
``legal_holds`` as the record. An order's effective hold is its latest active one (the
order's ``held_until``, which the retention run reads)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Outcome, TargetType
from sellervault.deletion.errors import (
    DeletionScopeNotFoundError,
    DeletionStateError,
    InvalidDeletionRequestError,
)
from sellervault.deletion.models import LegalHold
from sellervault.records import erasure
from sellervault.runtime import Runtime
from sellervault.store.ids import new_id

MAX_HOLD = timedelta(days=3653)
"""Ten years: a hold longer than that is a typo, or a decision for the policy, not a hold."""


@dataclass(frozen=True)
class Hold:
    id: str
    tenant_id: str
    amazon_order_id: str
    reason: str
    held_by: str
    held_until: datetime
    created_at: datetime
    released_at: datetime | None

    @classmethod
    def of(cls, row: LegalHold) -> Hold:
        return cls(row.id, row.tenant_id, row.amazon_order_id, row.reason, row.held_by,
                   row.held_until, row.created_at, row.released_at)


def place(rt: Runtime, auditor: Auditor, principal_id: str, tenant_id: str,
          amazon_order_id: str, reason: str, until: datetime) -> Hold:
    now = rt.clock.now()
    reason = reason.strip()
    if not reason or not reason.isprintable():
        raise InvalidDeletionRequestError("reason: say why, in one line")
    if until.tzinfo is None:
        raise InvalidDeletionRequestError("until: give a time zone")
    if not now < until <= now + MAX_HOLD:
        raise InvalidDeletionRequestError("until: a time in the next ten years")
    with rt.store.transaction() as session:
        if not erasure.lock_order(session, tenant_id, amazon_order_id):
            raise DeletionScopeNotFoundError("order")
        row = LegalHold(id=f"hld_{new_id(now)[:24]}", tenant_id=tenant_id,
                        amazon_order_id=amazon_order_id, reason=reason, held_by=principal_id,
                        held_until=until, created_at=now)
        session.add(row)
        session.flush()
        erasure.hold(session, tenant_id, amazon_order_id, _effective(session, row, now))
        auditor.record(session, Action.HOLDS_PLACE, Outcome.SUCCESS, tenant_id=tenant_id,
                       target_type=TargetType.LEGAL_HOLD, target_id=row.id)
        return Hold.of(row)


def release(rt: Runtime, auditor: Auditor, principal_id: str, hold_id: str) -> Hold:
    now = rt.clock.now()
    with rt.store.transaction() as session:
        held = session.get(LegalHold, hold_id)
        if held is None:
            raise DeletionScopeNotFoundError("legal hold")
        erasure.lock_order(session, held.tenant_id, held.amazon_order_id)
        released = session.execute(update(LegalHold).where(
            LegalHold.id == hold_id, LegalHold.released_at.is_(None)).values(
            released_by=principal_id, released_at=now))
        session.refresh(held)
        row = held
        if released.rowcount != 1:  # type: ignore[attr-defined]
            raise DeletionStateError("the hold was released already")
        erasure.hold(session, row.tenant_id, row.amazon_order_id,
                     _effective(session, row, now))
        auditor.record(session, Action.HOLDS_RELEASE, Outcome.SUCCESS,
                       tenant_id=row.tenant_id, target_type=TargetType.LEGAL_HOLD,
                       target_id=row.id)
        return Hold.of(row)


def list_holds(rt: Runtime, auditor: Auditor, limit: int = 100) -> list[Hold]:
    with rt.store.transaction() as session:
        found = [Hold.of(row) for row in session.scalars(
            select(LegalHold).order_by(LegalHold.created_at.desc(), LegalHold.id.desc())
            .limit(limit))]
        auditor.record(session, Action.HOLDS_LIST, Outcome.SUCCESS,
                       target_type=TargetType.LEGAL_HOLD, count=len(found))
    return found


def _effective(session: Session, row: LegalHold, now: datetime) -> datetime | None:
    """The order's hold after this change: its latest active hold's end, or none."""
    ends = session.scalars(select(LegalHold.held_until).where(
        LegalHold.tenant_id == row.tenant_id, LegalHold.amazon_order_id == row.amazon_order_id,
        LegalHold.released_at.is_(None), LegalHold.held_until > now))
    return max(ends, default=None)
