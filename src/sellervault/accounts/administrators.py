"""The vault always keeps an active administrator.

Disabling, offboarding, ending or taking ``admin`` away from the last active administrator
(the last with no end date) would leave nobody able to manage accounts. The check is a
check-then-write, so it is made under row locks: every active administrator's account row
is locked (``FOR UPDATE``) before they are counted, in the transaction that makes the
change. Two administrators disabling each other at the same moment then queue on each
other's rows; the second re-reads the first's committed change (PostgreSQL re-checks a
locked row's conditions under READ COMMITTED, and a second, fresh count sees a grant
revoked meanwhile) and finds itself the last. SQLite has one writer at a time (every
transaction begins IMMEDIATE), so the count cannot change under it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from sellervault.access.roles import ALL_TENANTS, Role
from sellervault.accounts import lockout
from sellervault.accounts.errors import LastAdministratorError
from sellervault.accounts.models import Account, GrantRow


def _administrators(now: datetime) -> Select[str]:
    """People who can administer now: active, ``admin`` on every tenant, before any end
    date. A service holding ``admin`` does not count: an API key with no second factor is
    not who the vault should be left to."""
    return (select(Account.id)
            .join(GrantRow, GrantRow.account_id == Account.id)
            .where(GrantRow.role == Role.ADMIN.value, GrantRow.tenant == ALL_TENANTS,
                   Account.kind == "person", Account.status == lockout.ACTIVE,
                   or_(Account.ends_at.is_(None), Account.ends_at > now))
            .order_by(Account.id))


def active_administrators(session: Session, now: datetime) -> list[str]:
    """The administrators (``_administrators``), each account row locked until the
    transaction ends, then counted again: the locking statement re-checks only rows that
    were updated, and a revoked ``admin`` grant deletes a grant row, not an account row,
    so only a fresh statement (READ COMMITTED: a new snapshot, taken once the locks are
    ours) sees a revocation committed while this transaction waited."""
    session.execute(_administrators(now).with_for_update(of=Account)).all()
    return list(session.scalars(_administrators(now)))


def lasting_administrators(session: Session, now: datetime) -> list[str]:
    """The administrators with no end date (call after ``active_administrators``, in the
    same transaction: the rows are locked already)."""
    return list(session.scalars(_administrators(now).where(Account.ends_at.is_(None))))


def keep_an_administrator(session: Session, account_id: str, now: datetime) -> None:
    """Refuse (409) a change that takes ``account_id``'s administration away, or gives it an
    end, unless another administrator with no end date remains; call it before the change,
    in its transaction. (An administrator ending tomorrow is not one to leave the vault to.)"""
    if account_id not in active_administrators(session, now):
        return  # not an administrator: nothing of the kind is taken away
    if not [other for other in lasting_administrators(session, now) if other != account_id]:
        raise LastAdministratorError()
