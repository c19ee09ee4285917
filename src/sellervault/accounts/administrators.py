"""The vault always keeps an active administrator.

Disabling, offboarding or taking ``admin`` away from the last active administrator would
leave nobody able to manage accounts. The check is a check-then-write, so it is made under
row locks: every active administrator's account row is locked (``FOR UPDATE``) before they
are counted, in the transaction that makes the change. Two administrators disabling each
other at the same moment then queue on each other's rows; the second re-reads the first's
committed change (PostgreSQL re-checks a locked row's conditions under READ COMMITTED) and
finds itself the last. SQLite has one writer at a time (every transaction begins IMMEDIATE),
so the count cannot change under it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from sellervault.access.roles import ALL_TENANTS, Role
from sellervault.accounts import lockout
from sellervault.accounts.errors import LastAdministratorError
from sellervault.accounts.models import Account, GrantRow


def active_administrators(session: Session, now: datetime) -> list[str]:
    """The ids of the accounts that can administer now (active, with ``admin`` on every
    tenant, before any end date), each row locked until the transaction ends."""
    return list(session.scalars(
        select(Account.id)
        .join(GrantRow, GrantRow.account_id == Account.id)
        .where(GrantRow.role == Role.ADMIN.value, GrantRow.tenant == ALL_TENANTS,
               Account.status == lockout.ACTIVE,
               or_(Account.ends_at.is_(None), Account.ends_at > now))
        .order_by(Account.id)  # one locking order: two transactions never deadlock on it
        .with_for_update(of=Account)))


def keep_an_administrator(session: Session, account_id: str, now: datetime) -> None:
    """Refuse (409) a change that takes ``account_id``'s administration away when it is the
    only active administrator; call it before the change, in its transaction."""
    administrators = active_administrators(session, now)
    if administrators == [account_id]:
        raise LastAdministratorError()
