"""Legal holds: an order kept from retention (``deletion.retention``) until a date, for a
stated reason, by a security officer; each placed and released hold is an event and stays in
``legal_holds`` as the record. An order's effective hold is its latest active one (the
order's ``held_until``, which the retention run reads).

A hold prevails over a deletion request too (GDPR Art. 17(3)(e)): a request whose scope
holds a held order is refused when filed and again when executed (``active_in``). The two
never cross: a hold is placed with its order's row locked, as an order's or a buyer's
deletion locks its scope's rows before it destroys their keys, and under the tenant's hold
lock (``lock_tenant``, shared), which a tenant's deletion takes exclusively before it reads
the tenant's holds. So either the hold commits first and the deletion sees it, or the hold
waits and then finds its order erased (410).

Each hold placed and released is written to the erasure ledger before it commits
(``deletion.obligations``): a restore from a backup taken before does not drop the hold (and
let retention erase the held order) nor bring a released one back."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Outcome, TargetType
from sellervault.deletion import ledger, obligations
from sellervault.deletion.errors import (
    DeletionScopeNotFoundError,
    DeletionStateError,
    HeldOrderErasedError,
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
        lock_tenant(session, tenant_id, exclusive=False)
        if not erasure.lock_order(session, tenant_id, amazon_order_id):
            raise DeletionScopeNotFoundError("order")
        if not erasure.tenant_held(session, rt.keyring, tenant_id) or \
                erasure.erased_on_request(session, rt.keyring, tenant_id, amazon_order_id):
            raise HeldOrderErasedError()
        row = LegalHold(id=f"hld_{new_id(now)[:24]}", tenant_id=tenant_id,
                        amazon_order_id=amazon_order_id, reason=reason, held_by=principal_id,
                        held_until=until, created_at=now)
        session.add(row)
        session.flush()
        erasure.hold(session, tenant_id, amazon_order_id, _effective(session, row, now))
        auditor.record(session, Action.HOLDS_PLACE, Outcome.SUCCESS, tenant_id=tenant_id,
                       target_type=TargetType.LEGAL_HOLD, target_id=row.id)
        ledger.record(rt.settings, session, obligations.of(obligations.HOLD_PLACED, row))
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
        ledger.record(rt.settings, session, obligations.of(obligations.HOLD_RELEASED, row))
        return Hold.of(row)


def tenant_of(rt: Runtime, hold_id: str) -> str:
    """The tenant a hold is on (404): what a route acting on it by its id holds up to the
    tenant's kill switch."""
    with rt.store.snapshot() as connection:
        tenant_id = connection.execute(select(LegalHold.tenant_id).where(
            LegalHold.id == hold_id)).scalar()
    if tenant_id is None:
        raise DeletionScopeNotFoundError("legal hold")
    return str(tenant_id)


def lock_tenant(session: Session, tenant_id: str, *, exclusive: bool) -> None:
    """The tenant's hold lock until the transaction ends (PostgreSQL; SQLite's writers take
    turns already): shared by holds being placed, exclusive for a tenant's deletion while
    it reads the tenant's holds and destroys its keys. Taken before any order row, as an
    ingest takes the tenant's key lock before its rows, so the locks never wait in a
    circle."""
    if session.get_bind().dialect.name != "postgresql":
        return
    lock = func.pg_advisory_xact_lock if exclusive else func.pg_advisory_xact_lock_shared
    session.execute(select(lock(_lock_id(tenant_id))))


def _lock_id(tenant_id: str) -> int:
    """64 bits of a domain-separated SHA-256 (apart from the tenant's key lock)."""
    digest = hashlib.sha256(b"sellervault/legal-holds/" + tenant_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def active_in(session: Session, scope: erasure.Scope, now: datetime,
              held_orders: list[str] | None = None) -> list[str]:
    """The ids of the active holds on the scope's orders (a whole tenant: on any of its
    orders), oldest first. ``held_orders``: the scope's held orders as the caller read
    them, locked (else they are read here)."""
    query = select(LegalHold.id).where(LegalHold.tenant_id == scope.tenant_id,
                                       LegalHold.released_at.is_(None),
                                       LegalHold.held_until > now)
    if not scope.whole_tenant:
        orders = erasure.held_orders(session, scope, now) if held_orders is None \
            else held_orders
        if not orders:
            return []
        query = query.where(LegalHold.amazon_order_id.in_(orders))
    return list(session.scalars(query.order_by(LegalHold.created_at, LegalHold.id)))


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
    return obligations.effective_hold(session, row.tenant_id, row.amazon_order_id, now)
