"""What happens to an account after it is made: a person signs out, an administrator
disables and re-enables it. Each change is a security event naming the actor (the auditor's)
and the account, written in the transaction that makes the change.

A disabled account's credentials stop at once, on every server process: ``authenticate``
reads the account's status with the credential on every request (no cache), so the next
request after the commit is refused. Disabling also revokes every open session, so that
re-enabling the account does not bring them back: the person signs in again. Its API keys
stay (a service re-enabled works again with the key it has; revoking a key is its own
operation).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.access.roles import Principal
from sellervault.accounts import lockout
from sellervault.accounts.errors import (
    AccountNotFoundError,
    AccountRequestError,
    AccountStateError,
    NotASessionError,
    UnauthenticatedError,
)
from sellervault.accounts.keys import credential_pepper
from sellervault.accounts.models import Account, SessionRow
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Outcome, TargetType
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
        changed = cast(CursorResult[Any], session.execute(
            update(Account).where(Account.id == account_id, Account.status == lockout.ACTIVE)
            .values(status=lockout.DISABLED).execution_options(synchronize_session=False)))
        if changed.rowcount != 1:
            _refuse_state(session, account_id)
        session.execute(update(SessionRow).where(SessionRow.account_id == account_id,
                                                 SessionRow.revoked_at.is_(None))
                        .values(revoked_at=now))
        auditor.record(session, Action.ACCOUNTS_DISABLE, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=account_id)


def enable(rt: Runtime, auditor: Auditor, admin: Principal, account_id: str) -> None:
    """Re-enable a disabled account (disabled by an administrator or by ten failed sign-ins:
    its failure count and lock are cleared too). Accounts waiting for or refused approval
    are not this operation's: a second person decides those."""
    with rt.store.transaction() as session:
        changed = cast(CursorResult[Any], session.execute(
            update(Account).where(Account.id == account_id,
                                  Account.status == lockout.DISABLED)
            .values(status=lockout.ACTIVE).execution_options(synchronize_session=False)))
        if changed.rowcount != 1:
            _refuse_state(session, account_id)
        lockout.forgive(session, account_id)
        auditor.record(session, Action.ACCOUNTS_ENABLE, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=account_id)


def _refuse_state(session: Session, account_id: str) -> None:
    """Why a status change changed nothing: no such account (404), or not in the status the
    change starts from (409). Raised inside the transaction: it rolls back."""
    if session.scalar(select(Account.id).where(Account.id == account_id)) is None:
        raise AccountNotFoundError()
    raise AccountStateError()



