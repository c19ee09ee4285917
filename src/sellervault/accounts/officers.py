"""Who is a security officer now: the answer other domains ask for (an alert is assigned only
to one), so that none of them reads the accounts tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from sellervault.access.roles import ALL_TENANTS, Role
from sellervault.accounts import lockout
from sellervault.accounts.models import Account, GrantRow


def is_active_officer(session: Session, account_id: str, now: datetime) -> bool:
    """Whether ``account_id`` is an account that works as a security officer now: active
    (not disabled, pending or enrolling), before any end date, holding ``security-officer``.

    Call it in the transaction that acts on the answer: the account and grant rows are
    share-locked (PostgreSQL ``FOR SHARE``) until it ends, so an officer disabled or a grant
    revoked at the same moment waits for it, or is seen done (the locking read re-checks a
    row changed meanwhile). SQLite has one writer at a time."""
    found = session.execute(
        select(Account.id).join(GrantRow, GrantRow.account_id == Account.id)
        .where(Account.id == account_id, Account.status == lockout.ACTIVE,
               or_(Account.ends_at.is_(None), Account.ends_at > now),
               GrantRow.role == Role.SECURITY_OFFICER.value, GrantRow.tenant == ALL_TENANTS)
        .with_for_update(read=True)).first()
    return found is not None
