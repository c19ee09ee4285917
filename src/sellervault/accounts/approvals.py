"""A second person for every service that may read PII.

An API key is a credential nobody watches type a password or a TOTP code: an admin who could
create a service holding ``pii-reader`` and receive its key would hold a PII credential of
their own making for up to 365 days, with no second person, no MFA and no one the wiser. So a
service's ``pii-reader`` grants name tenants (never ``*``), and a service holding one is
created *pending*: its key exists (the admin hands it to the seller application) but
authenticates nothing until a security officer who is not its creator approves it. A rejected
service's key never works. Each step is a security event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from sellervault.access.actions import Action
from sellervault.access.decisions import decide_approval
from sellervault.access.roles import Grant, Principal, Role
from sellervault.accounts.errors import (
    AccountNotFoundError,
    NotPendingError,
    SecondPersonRequiredError,
)
from sellervault.accounts.models import Account, GrantRow
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Outcome, TargetType
from sellervault.runtime import Runtime

ACTIVE = "active"
PENDING = "pending"
REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class PendingAccount:
    id: str
    kind: str
    name: str
    grants: list[Grant]
    created_by: str | None
    created_at: datetime


def service_status(grants: list[Grant]) -> str:
    """The status a new service starts in: pending approval when it may read PII."""
    return PENDING if any(g.role is Role.PII_READER for g in grants) else ACTIVE


def list_pending(rt: Runtime, auditor: Auditor) -> list[PendingAccount]:
    with rt.store.transaction() as session:
        accounts = session.scalars(select(Account).where(Account.status == PENDING)
                                   .order_by(Account.created_at)).all()
        grants: dict[str, list[Grant]] = {account.id: [] for account in accounts}
        for account_id, role, tenant in session.execute(
                select(GrantRow.account_id, GrantRow.role, GrantRow.tenant)
                .where(GrantRow.account_id.in_(list(grants)))):
            grants[account_id].append(Grant(Role(role), tenant))
        auditor.record(session, Action.APPROVALS_LIST, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, count=len(accounts))
        return [PendingAccount(a.id, a.kind, a.name, grants[a.id], a.created_by, a.created_at)
                for a in accounts]


def decide(rt: Runtime, auditor: Auditor, approver: Principal, account_id: str, *,
           approve: bool) -> str:
    """Approve (status active) or reject (rejected) a pending account; its new status. The
    change is one conditional UPDATE from pending, so two decisions at the same moment cannot
    both pass: the second finds nothing pending (409)."""
    action = Action.ACCOUNTS_APPROVE if approve else Action.ACCOUNTS_REJECT
    status = ACTIVE if approve else REJECTED
    with rt.store.transaction() as session:
        found = session.execute(select(Account.status, Account.created_by)
                                .where(Account.id == account_id)).first()
        if found is None:
            raise AccountNotFoundError()
        if not decide_approval(approver, found.created_by).allowed:
            raise SecondPersonRequiredError()
        changed = cast(CursorResult[Any], session.execute(
            update(Account).where(Account.id == account_id, Account.status == PENDING)
            .values(status=status).execution_options(synchronize_session=False)))
        if changed.rowcount != 1:
            raise NotPendingError()
        auditor.record(session, action, Outcome.SUCCESS, target_type=TargetType.ACCOUNT,
                       target_id=account_id)
    return status
