"""Re-enrolment: what an administrator does for a person who lost their authenticator (or
their recovery codes, or whose enrolment token expired unused).

Nobody resets another person's password or reads their TOTP secret (policy A1): the
administrator gets a new enrolment token for the account, exactly as at its creation, and
hands it over; the person enrols again (``accounts.enrolment``: a new authenticator, a
password of their own that is none of their last ten, ten new recovery codes). In one
conditional write the account goes back to ``enrolling``; in the same transaction its
sessions end, its unused recovery codes and enrolment tokens stop working, its sign-in
failures are forgiven, and the event names the administrator and the account. Until the
person finishes, the account cannot sign in, and the old password is worth nothing to anyone
who learns it.

A disabled account is re-enabled first (``accounts.lifecycle.enable``): re-enrolment is not a
way around a disabling. An administrator does not re-enrol their own account: another one
does, who can see who asks.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from sellervault.access.actions import Action
from sellervault.access.roles import Principal
from sellervault.accounts import enrolment, lifecycle, lockout
from sellervault.accounts.errors import (
    AccountNotFoundError,
    AccountRequestError,
    AccountStateError,
)
from sellervault.accounts.models import Account
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Outcome, TargetType
from sellervault.runtime import Runtime

_FROM = (lockout.ACTIVE, enrolment.ENROLLING)


def reenrol(rt: Runtime, auditor: Auditor, admin: Principal,
            account_id: str) -> enrolment.IssuedEnrolment:
    """Send the person ``account_id`` back to enrolment; the new token (72 hours, once)."""
    if account_id == admin.id:
        raise AccountRequestError("an administrator cannot re-enrol their own account")
    now = rt.clock.now()
    with rt.store.transaction() as session:
        changed = cast(CursorResult[Any], session.execute(
            update(Account).where(Account.id == account_id, Account.kind == "person",
                                  Account.status.in_(_FROM))
            .values(status=enrolment.ENROLLING, totp_secret_ct=None, totp_last_step=0,
                    must_change_password=False)
            .execution_options(synchronize_session=False)))
        if changed.rowcount != 1:
            if session.scalar(select(Account.id).where(Account.id == account_id)) is None:
                raise AccountNotFoundError()
            raise AccountStateError()  # a service, or disabled, pending or rejected
        lifecycle.end_sessions(session, account_id, now)
        enrolment.end_secrets(session, account_id, now)
        lockout.forgive(session, account_id)
        issued = enrolment.issue(rt, session, account_id)
        auditor.record(session, Action.ACCOUNTS_REENROL, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=account_id)
    return issued
