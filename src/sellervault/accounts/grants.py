"""Adding and revoking one grant of an existing account (role ``admin``).

Whether a grant may be added depends on the others the account holds (separation of
duties: ``access.decisions.decide_grants``), so the check and the write must not interleave
with another change to the same account: the account's row is locked (``FOR UPDATE``)
before its grants are read. Two administrators adding ``pii-reader`` and ``admin`` to one
person at the same moment then queue, and the second sees the first's grant.

A service gets ``pii-reader`` only when it is created, where a second person approves it
(``approvals``): adding one later would give an administrator a PII credential nobody else
looked at. A grant revoked stops at the next request on every process (grants are read with
the credential, never cached). ``admin`` is never revoked from the last active
administrator (``administrators``).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, delete, select

from sellervault.access.actions import Action
from sellervault.access.decisions import Decision, decide_grants
from sellervault.access.roles import Grant, Principal, Role
from sellervault.accounts.administrators import keep_an_administrator
from sellervault.accounts.errors import (
    AccountNotFoundError,
    AccountRequestError,
    GrantStateError,
)
from sellervault.accounts.models import Account, GrantRow
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Outcome, TargetType
from sellervault.runtime import Runtime

GRANT_REFUSALS = {
    Decision.SEPARATION_OF_DUTIES: "pii-reader cannot be held together with admin, operator, "
                            "security-officer or auditor (separation of duties)",
    Decision.PII_ON_EVERY_TENANT: "pii-reader is granted on named tenants only, never '*'",
    Decision.PERSONS_ONLY_ROLE: "admin and security-officer are held by persons only, never "
                                "by a service",
}


def check(grants: list[Grant], kind: str = "person") -> None:
    """Refuse (422) grants one account (of ``kind``) may not hold together."""
    decision = decide_grants(grants, kind)
    if not decision.allowed:
        raise AccountRequestError(GRANT_REFUSALS[decision])


def _not_own(admin: Principal, account_id: str) -> None:
    """An administrator's own grants are changed by another: nobody widens their own reach
    (security-officer beside admin makes one the second person for their own services)."""
    if account_id == admin.id:
        raise AccountRequestError("an administrator's own grants are changed by another")


def add(rt: Runtime, auditor: Auditor, admin: Principal, account_id: str,
        grant: Grant) -> None:
    _not_own(admin, account_id)
    now = rt.clock.now()
    with rt.store.transaction() as session:
        kind = session.scalar(select(Account.kind).where(Account.id == account_id)
                              .with_for_update())
        if kind is None:
            raise AccountNotFoundError()
        held = [Grant(Role(role), tenant) for role, tenant in session.execute(
            select(GrantRow.role, GrantRow.tenant).where(GrantRow.account_id == account_id))]
        if grant in held:
            raise GrantStateError()
        check([*held, grant], kind)
        if kind == "service" and grant.role is Role.PII_READER:
            raise GrantStateError("a service gets pii-reader only when it is created, with a "
                                  "second person's approval: create a service for it")
        session.add(GrantRow(account_id=account_id, role=grant.role.value, tenant=grant.tenant,
                             granted_by=admin.id, granted_at=now))
        auditor.record(session, Action.GRANTS_ADD, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=account_id,
                       tenant_id=grant.tenant, criteria=grant.role.value)


def revoke(rt: Runtime, auditor: Auditor, admin: Principal, account_id: str,
           grant: Grant) -> None:
    _not_own(admin, account_id)
    now = rt.clock.now()
    with rt.store.transaction() as session:
        if grant.role is Role.ADMIN:
            keep_an_administrator(session, account_id, now)
        removed = cast(CursorResult[Any], session.execute(
            delete(GrantRow).where(GrantRow.account_id == account_id,
                                   GrantRow.role == grant.role.value,
                                   GrantRow.tenant == grant.tenant)
            .execution_options(synchronize_session=False)))
        if removed.rowcount != 1:
            if session.scalar(select(Account.id).where(Account.id == account_id)) is None:
                raise AccountNotFoundError()
            raise GrantStateError("the account does not hold this grant")
        auditor.record(session, Action.GRANTS_REVOKE, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=account_id,
                       tenant_id=grant.tenant, criteria=grant.role.value)
