"""Restricting the processing of a buyer's data (a data subject's right; GDPR art. 18): the
data is kept, but every masked read, reveal and search hit of the buyer's orders in the
tenant is refused with ``processing_restricted`` (451) until a security officer lifts it.

The buyer is named by email, used once: the restriction holds the tenant's blind-index
digest of it (what each of their orders' ``email_bidx`` holds) and their pseudonym (for the
events). Reading joins the active restriction into the same statement that finds the order
(``service``), so a restriction holds from its commit for every order of the buyer, those
ingested later included, in every process: there is no flag on the orders to keep in step.
At most one restriction per buyer is active (a partial unique index): of two officers
restricting the same buyer at once, one gets 409.

Each restriction placed and lifted is written to the erasure ledger before it commits
(``deletion.obligations``; the digest and pseudonym, never the email): a restore from a
backup taken before does not let the buyer's orders be read again, nor restrict them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Outcome, TargetType
from sellervault.crypto.keyring import UnknownTenantKeyError
from sellervault.deletion import ledger, obligations
from sellervault.records.errors import (
    RestrictionError,
    RestrictionNotFoundError,
    RestrictionStateError,
)
from sellervault.records.models import Restriction
from sellervault.records.service import EMAIL, load_pseudonyms
from sellervault.records.spapi import normalize_email
from sellervault.runtime import Runtime
from sellervault.store.ids import new_id


@dataclass(frozen=True)
class Restricted:
    """A restriction as the register shows it: the buyer by pseudonym, never the email."""

    id: str
    tenant_id: str
    buyer: str
    reason: str
    restricted_by: str
    created_at: datetime
    lifted_by: str | None
    lifted_at: datetime | None

    @classmethod
    def of(cls, row: Restriction) -> Restricted:
        return cls(row.id, row.tenant_id, row.buyer, row.reason, row.restricted_by,
                   row.created_at, row.lifted_by, row.lifted_at)


def restrict(rt: Runtime, auditor: Auditor, principal_id: str, tenant_id: str,
             buyer_email: str, reason: str) -> Restricted:
    """Restrict the buyer with this email in this tenant (whether or not they have orders
    yet: their orders ingested later are restricted too). 404 for a tenant with no keys;
    409 if the buyer is restricted already."""
    reason = reason.strip()
    if not reason or not reason.isprintable():
        raise RestrictionError("reason: say why, in one line")
    email = normalize_email(buyer_email)
    if "@" not in email:
        raise RestrictionError("buyer_email: not an email address")
    pseudonyms = load_pseudonyms(rt)
    now = rt.clock.now()
    try:
        with rt.store.transaction() as session:
            try:
                digest = rt.keyring.blind_index(session, tenant_id).digest(EMAIL, email)
            except UnknownTenantKeyError:
                raise RestrictionNotFoundError("tenant") from None
            row = Restriction(id=f"rst_{new_id(now)[:24]}", tenant_id=tenant_id,
                              buyer_digest=digest,
                              buyer=pseudonyms.of(tenant_id, EMAIL, digest), reason=reason,
                              restricted_by=principal_id, created_at=now)
            session.add(row)
            session.flush()  # (a second active restriction fails here, before the entry)
            auditor.record(session, Action.RESTRICTIONS_PLACE, Outcome.SUCCESS,
                           tenant_id=tenant_id, target_type=TargetType.RESTRICTION,
                           target_id=row.id, buyer=row.buyer)
            ledger.record(rt.settings, session,
                          obligations.of(obligations.RESTRICTION_PLACED, row))
            return Restricted.of(row)
    except IntegrityError:  # (the partial unique index: one active restriction per buyer)
        raise RestrictionStateError("the buyer's processing is restricted already") from None


def lift(rt: Runtime, auditor: Auditor, principal_id: str, restriction_id: str) -> Restricted:
    """Lift a restriction (one conditional update: two lifts at once, one 409)."""
    with rt.store.transaction() as session:
        lifted = session.execute(update(Restriction).where(
            Restriction.id == restriction_id, Restriction.lifted_at.is_(None)).values(
            lifted_by=principal_id, lifted_at=rt.clock.now()))
        row = session.get(Restriction, restriction_id)
        if row is None:
            raise RestrictionNotFoundError()
        if lifted.rowcount != 1:  # type: ignore[attr-defined]
            raise RestrictionStateError("the restriction was lifted already")
        auditor.record(session, Action.RESTRICTIONS_LIFT, Outcome.SUCCESS,
                       tenant_id=row.tenant_id, target_type=TargetType.RESTRICTION,
                       target_id=row.id, buyer=row.buyer)
        ledger.record(rt.settings, session, obligations.of(obligations.RESTRICTION_LIFTED, row))
        return Restricted.of(row)


def tenant_of(rt: Runtime, restriction_id: str) -> str:
    """The tenant a restriction is on (404): what a route acting on it by its id holds up
    to the tenant's kill switch."""
    with rt.store.snapshot() as connection:
        tenant_id = connection.execute(select(Restriction.tenant_id).where(
            Restriction.id == restriction_id)).scalar()
    if tenant_id is None:
        raise RestrictionNotFoundError()
    return str(tenant_id)


def list_restrictions(rt: Runtime, auditor: Auditor, tenant_id: str | None = None,
                      active_only: bool = False, limit: int = 100) -> list[Restricted]:
    """The register, newest first (lifted ones too, unless ``active_only``)."""
    query = select(Restriction).order_by(Restriction.created_at.desc(),
                                         Restriction.id.desc()).limit(limit)
    if tenant_id is not None:
        query = query.where(Restriction.tenant_id == tenant_id)
    if active_only:
        query = query.where(Restriction.lifted_at.is_(None))
    with rt.store.transaction() as session:
        found = [Restricted.of(row) for row in session.scalars(query)]
        auditor.record(session, Action.RESTRICTIONS_LIST, Outcome.SUCCESS,
                       tenant_id=tenant_id, target_type=TargetType.RESTRICTION,
                       count=len(found))
    return found
