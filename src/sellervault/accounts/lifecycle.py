"""What happens to an account after it is made: a person signs out; an administrator
disables and re-enables it, gives it an end date, offboards it; the system disables it at
its end date and after 90 days unused. Each change is a security event naming the actor (the
auditor's) and the account, written in the transaction that makes the change. No change may
leave the vault without an active administrator (``administrators``).

A disabled account's credentials stop at once, on every server process: ``authenticate``
reads the account's status with the credential on every request (no cache), so the next
request after the commit is refused. Disabling also revokes every open session, so that
re-enabling the account does not bring them back: the person signs in again. Its API keys
stay (a service re-enabled works again with the key it has; revoking a key is its own
operation).

An end date stops access at that moment without waiting for anyone: ``authenticate`` and
sign-in compare it with the clock on every request. The ``account-end-dates`` job then
disables the account, so that its status says so too. Offboarding (a leaver) is everything
at once: disabled, end date now, every session, API key, enrolment token and recovery code
ended, every grant removed. It can be re-enabled (a mistake, a returning person), but holds
nothing until an administrator grants it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, case, delete, or_, select, update
from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.access.roles import ALL_TENANTS, Grant, Principal, Role
from sellervault.accounts import api_keys, enrolment, lockout
from sellervault.accounts.administrators import (
    active_administrators,
    keep_an_administrator,
    lasting_administrators,
)
from sellervault.accounts.errors import (
    AccountNotFoundError,
    AccountRequestError,
    AccountStateError,
    NotASessionError,
    SecurityOfficerRequiredError,
    UnauthenticatedError,
)
from sellervault.accounts.keys import credential_pepper
from sellervault.accounts.models import Account, GrantRow, SessionRow
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import SYSTEM_ACTOR, Outcome, Reason, TargetType
from sellervault.crypto.credentials import SESSION_PREFIX, keyed_hash
from sellervault.runtime import Runtime


def sign_out(rt: Runtime, auditor: Auditor, principal: Principal, token: str) -> None:
    """End the session ``token`` (logout): refused from then on, on every process. An API
    key is not a session: it is revoked by an administrator, never by itself."""
    if not token.startswith(SESSION_PREFIX):
        raise NotASessionError()
    now = rt.clock.now()
    with rt.store.transaction() as session:
        ended = cast(CursorResult[Any], session.execute(
            update(SessionRow).where(
                SessionRow.token_hash == keyed_hash(credential_pepper(rt, session), token),
                SessionRow.account_id == principal.id, SessionRow.revoked_at.is_(None))
            .values(revoked_at=now).execution_options(synchronize_session=False)))
        if ended.rowcount != 1:  # revoked meanwhile (a second logout at the same moment)
            raise UnauthenticatedError()
        auditor.record(session, Action.SESSION_DELETE, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=principal.id)


def disable(rt: Runtime, auditor: Auditor, admin: Principal, account_id: str) -> None:
    """Disable an active account: its credentials stop now and its sessions end. An
    administrator cannot disable their own account (the vault would risk having none)."""
    if account_id == admin.id:
        raise AccountRequestError("an administrator cannot disable their own account")
    now = rt.clock.now()
    with rt.store.transaction() as session:
        keep_an_administrator(session, account_id, now)
        changed = cast(CursorResult[Any], session.execute(
            update(Account).where(Account.id == account_id, Account.status == lockout.ACTIVE)
            .values(status=lockout.DISABLED).execution_options(synchronize_session=False)))
        if changed.rowcount != 1:
            _refuse_state(session, account_id)
        end_sessions(session, account_id, now)
        auditor.record(session, Action.ACCOUNTS_DISABLE, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=account_id)


def enable(rt: Runtime, auditor: Auditor, admin: Principal, account_id: str) -> None:
    """Re-enable a disabled account (disabled by an administrator or by ten failed sign-ins:
    its failure count and lock are cleared too; an end date that has passed, an offboarded
    account's included, is cleared: re-enabling is the decision to let it in again).
    Accounts waiting for or refused approval are not this operation's: a second person
    decides those. An account a canary locked is a security officer's to re-enable (403
    for anyone else; the condition is part of the update, so a lock landing meanwhile is
    not undone by an administrator's enable that read the account before it)."""
    now = rt.clock.now()
    conditions = [Account.id == account_id, Account.status == lockout.DISABLED]
    if Grant(Role.SECURITY_OFFICER, ALL_TENANTS) not in admin.grants:
        conditions.append(Account.disabled_reason.is_distinct_from(Reason.CANARY_ACCESS.value))
    with rt.store.transaction() as session:
        changed = cast(CursorResult[Any], session.execute(
            update(Account).where(*conditions)
            .values(status=lockout.ACTIVE, disabled_reason=None,
                    ends_at=case((Account.ends_at <= now, None), else_=Account.ends_at))
            .execution_options(synchronize_session=False)))
        if changed.rowcount != 1:
            if session.scalar(select(Account.disabled_reason).where(
                    Account.id == account_id, Account.status == lockout.DISABLED)) \
                    == Reason.CANARY_ACCESS.value:
                raise SecurityOfficerRequiredError()
            _refuse_state(session, account_id)
        lockout.forgive(session, account_id)
        auditor.record(session, Action.ACCOUNTS_ENABLE, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=account_id)


@dataclass(frozen=True, slots=True)
class Offboarded:
    """What offboarding ended."""

    sessions: int
    api_keys: int
    grants: int


def offboard(rt: Runtime, auditor: Auditor, admin: Principal, account_id: str) -> Offboarded:
    """A leaver: whatever the account's status, it is disabled with an end date of now, and
    every session, API key, enrolment token and recovery code of it ends, and every grant
    goes, in one transaction."""
    if account_id == admin.id:
        raise AccountRequestError("an administrator cannot offboard their own account")
    now = rt.clock.now()
    with rt.store.transaction() as session:
        keep_an_administrator(session, account_id, now)
        changed = cast(CursorResult[Any], session.execute(
            update(Account).where(Account.id == account_id)
            .values(status=lockout.DISABLED,
                    ends_at=case((Account.ends_at < now, Account.ends_at), else_=now))
            .execution_options(synchronize_session=False)))
        if changed.rowcount != 1:
            raise AccountNotFoundError()
        sessions = end_sessions(session, account_id, now)
        keys = api_keys.revoke_all(session, account_id, now)
        enrolment.end_secrets(session, account_id, now)
        grants = cast(CursorResult[Any], session.execute(
            delete(GrantRow).where(GrantRow.account_id == account_id)
            .execution_options(synchronize_session=False))).rowcount
        auditor.record(session, Action.ACCOUNTS_OFFBOARD, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=account_id, count=grants)
    return Offboarded(sessions, keys, grants)


MAX_END_DATE_AHEAD = timedelta(days=3653)
"""An end date further out is a typo (or a date no clock can store): refused."""


def set_end_date(rt: Runtime, auditor: Auditor, admin: Principal, account_id: str,
                 ends_at: datetime | None) -> None:
    """Set the moment ``account_id``'s access stops (in the future: to stop it now, offboard
    or disable), or clear it (None)."""
    now = rt.clock.now()
    if ends_at is not None and ends_at <= now:
        raise AccountRequestError("an end date must be in the future (to stop access now, "
                                  "disable or offboard the account)")
    if ends_at is not None and ends_at > now + MAX_END_DATE_AHEAD:
        raise AccountRequestError("an end date is at most ten years ahead")
    if account_id == admin.id:
        raise AccountRequestError("an administrator's own end date is set by another")
    with rt.store.transaction() as session:
        if ends_at is not None:
            keep_an_administrator(session, account_id, now)
        changed = cast(CursorResult[Any], session.execute(
            update(Account).where(Account.id == account_id).values(ends_at=ends_at)
            .execution_options(synchronize_session=False)))
        if changed.rowcount != 1:
            raise AccountNotFoundError()
        auditor.record(session, Action.ACCOUNTS_END_DATE, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=account_id)


INACTIVITY = timedelta(days=90)
_DISABLEABLE = (lockout.ACTIVE,)
"""What the rules disable: only active accounts. One waiting for approval or enrolling
authenticates nothing anyway; disabled, it could be re-enabled straight to active, past its
approval or its enrolment."""


def disable_ended(rt: Runtime) -> int:
    """The ``account-end-dates`` job: disable every account whose end date has passed (its
    access stopped then already) and end its sessions; how many. One event each, by the
    system, with the reason ``end_date``."""
    now = rt.clock.now()
    return _disable_by_rule(rt, Reason.END_DATE, now, Account.ends_at <= now)


def disable_inactive(rt: Runtime) -> int:
    """The ``inactive-accounts`` job: disable every active account unused for 90 days (no
    sign-in nor request since, or since it was made); how many. When that would disable
    every active administrator, they are left alone (the vault would have nobody to
    re-enable anyone): their inactivity shows in the account listing for the next review."""
    now = rt.clock.now()
    unused_since = now - INACTIVITY
    return _disable_by_rule(
        rt, Reason.INACTIVE, now, Account.status == lockout.ACTIVE,
        or_(Account.last_used_at < unused_since,
            Account.last_used_at.is_(None) & (Account.created_at < unused_since)),
        keep_administrator=True)


def disable_for_canary(rt: Runtime, account_id: str) -> bool:
    """Disable the account that touched a canary (``monitoring.detectors``): its sessions end
    and its credentials are refused from its next request; a security officer or an
    administrator re-enables it after looking. Whether it was active until now."""
    now = rt.clock.now()
    return _disable_by_rule(rt, Reason.CANARY_ACCESS, now, Account.id == account_id) == 1


def disable_for_volume(rt: Runtime, account_id: str) -> bool:
    """Disable a *person* who revealed an unusual number of buyers (``monitoring.detectors``,
    PARAMETERS.md: "volume breach by a person"). A service is not disabled for volume: its
    volume is its job, and stopping it stops the business; the alert goes out either way.
    Whether it was an active person until now."""
    now = rt.clock.now()
    return _disable_by_rule(rt, Reason.RETRIEVAL_VOLUME, now, Account.id == account_id,
                            Account.kind == "person") == 1


def _disable_by_rule(rt: Runtime, reason: Reason, now: datetime, *conditions: Any,
                     keep_administrator: bool = False) -> int:
    auditor = Auditor(rt.audit, SYSTEM_ACTOR)
    with rt.store.transaction() as session:
        administrators: set[str] = set()
        if keep_administrator:
            active_administrators(session, now)  # (locks them)
            administrators = set(lasting_administrators(session, now))
        due = set(session.scalars(select(Account.id).where(
            Account.status.in_(_DISABLEABLE), *conditions).with_for_update()))
        if administrators and administrators <= due:
            due -= administrators
        disabled = sorted(due)
        if disabled:
            session.execute(update(Account).where(Account.id.in_(disabled))
                            .values(status=lockout.DISABLED, disabled_reason=reason.value)
                            .execution_options(synchronize_session=False))
        for account_id in disabled:
            end_sessions(session, account_id, now)
            auditor.record(session, Action.ACCOUNTS_DISABLE, Outcome.SUCCESS,
                           target_type=TargetType.ACCOUNT, target_id=account_id,
                           reason=reason)
    return len(disabled)


def end_sessions(session: Session, account_id: str, now: datetime) -> int:
    """Revoke every open session of ``account_id``, in the caller's transaction; how many
    (disabling, offboarding, a password change, a re-enrolment)."""
    ended = cast(CursorResult[Any], session.execute(
        update(SessionRow).where(SessionRow.account_id == account_id,
                                 SessionRow.revoked_at.is_(None))
        .values(revoked_at=now).execution_options(synchronize_session=False)))
    return ended.rowcount


def _refuse_state(session: Session, account_id: str) -> None:
    """Why a status change changed nothing: no such account (404), or not in the status the
    change starts from (409). Raised inside the transaction: it rolls back."""
    if session.scalar(select(Account.id).where(Account.id == account_id)) is None:
        raise AccountNotFoundError()
    raise AccountStateError()



