"""Enrolment: a person makes their account their own, so that nobody else ever learns their
secrets (policy A1). An administrator creates the person and gets only an enrolment token
(single use, 72 hours) to hand over; the person then

1. ``start``s with the token and gets a TOTP secret for their authenticator (a new one each
   time they start again, until they finish: the last one shown is the one that counts);
2. ``finish``es with the token, a password of their choosing (every password rule) and a
   code from the authenticator, which proves it holds the last secret; the account becomes
   active, and they get ten recovery codes, each usable once in place of a TOTP code.

The token and the recovery codes are stored as keyed hashes only; the TOTP secret encrypted.
Finishing is one conditional write (the token unused and unexpired, the account still
enrolling with the secret the code was checked against): two finishes at the same moment,
or a start racing a finish, cannot both pass. Until then the account cannot sign in.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import pyotp
from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.accounts import password_history
from sellervault.accounts.errors import (
    CodeMismatchError,
    InvalidEnrolmentError,
    PasswordReusedError,
)
from sellervault.accounts.keys import credential_pepper, totp_cipher, totp_step
from sellervault.accounts.models import Account, EnrolmentRow, RecoveryCodeRow
from sellervault.accounts.passwords import check_password_rules, hash_password
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Outcome, TargetType
from sellervault.crypto.aead import bind
from sellervault.crypto.credentials import ENROLMENT_PREFIX, keyed_hash, new_token
from sellervault.crypto.errors import DecryptionError
from sellervault.runtime import Runtime

ENROLLING = "enrolling"
ACTIVE = "active"
LIFETIME = timedelta(hours=72)
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off paper
_RECOVERY_GROUPS, _RECOVERY_GROUP = 4, 4  # 16 characters of 32: 80 bits


@dataclass(frozen=True, slots=True)
class IssuedEnrolment:
    token: str
    expires_at: datetime


def end_secrets(session: Session, account_id: str, now: datetime) -> None:
    """Use up every unused enrolment token and recovery code of ``account_id``, in the
    caller's transaction (a re-enrolment, an offboarding)."""
    for table in (EnrolmentRow, RecoveryCodeRow):
        session.execute(update(table).where(table.account_id == account_id,
                                            table.used_at.is_(None))
                        .values(used_at=now).execution_options(synchronize_session=False))


def issue(rt: Runtime, session: Session, account_id: str) -> IssuedEnrolment:
    """A new enrolment token for ``account_id``, in the caller's transaction."""
    now = rt.clock.now()
    token = new_token(ENROLMENT_PREFIX)
    session.add(EnrolmentRow(token_hash=keyed_hash(credential_pepper(rt, session), token),
                             account_id=account_id, created_at=now,
                             expires_at=now + LIFETIME))
    return IssuedEnrolment(token, now + LIFETIME)


def _live(rt: Runtime, session: Session, token: str) -> tuple[bytes, Account] | None:
    """The token's hash and its enrolling account; None for a token unknown, used, expired
    or malformed (one answer for all)."""
    if not token.startswith(ENROLMENT_PREFIX) or len(token) > 128:
        return None
    token_hash = keyed_hash(credential_pepper(rt, session), token)
    found = session.execute(
        select(Account).join(EnrolmentRow, EnrolmentRow.account_id == Account.id)
        .where(EnrolmentRow.token_hash == token_hash, EnrolmentRow.used_at.is_(None),
               EnrolmentRow.expires_at > rt.clock.now(), Account.status == ENROLLING)
    ).scalar_one_or_none()
    return None if found is None else (token_hash, found)


def _refused(session: Session, auditor: Auditor, action: Action) -> None:
    """The event of a refused token; the caller raises once the transaction has committed
    it."""
    auditor.record(session, action, Outcome.DENIED, target_type=TargetType.ACCOUNT,
                   status=InvalidEnrolmentError.status, reason=InvalidEnrolmentError.code)


def start(rt: Runtime, auditor: Auditor, token: str) -> str:
    """The TOTP secret to put in the person's authenticator (a new one at each start)."""
    secret = _start(rt, auditor, token)
    if secret is None:
        raise InvalidEnrolmentError()
    return secret


def _start(rt: Runtime, auditor: Auditor, token: str) -> str | None:
    secret = pyotp.random_base32()
    with rt.store.transaction() as session:
        live = _live(rt, session, token)
        if live is None:
            _refused(session, auditor, Action.ENROLMENT_START)
            return None
        _, account = live
        session.execute(update(Account).where(Account.id == account.id)
                        .values(totp_secret_ct=totp_cipher(rt, session).seal(
                            secret.encode(), bind("totp", account.id)), totp_last_step=0)
                        .execution_options(synchronize_session=False))
        auditor.record(session, Action.ENROLMENT_START, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=account.id)
    return secret


def finish(rt: Runtime, auditor: Auditor, token: str, new_password: str,
           totp_code: str) -> list[str]:
    """Set the person's password, prove their authenticator, activate the account; its ten
    recovery codes (shown once)."""
    with rt.store.transaction() as session:
        live = _live(rt, session, token)
        if live is None:
            _refused(session, auditor, Action.ENROLMENT_FINISH)
        else:
            token_hash, account = live
            sealed = account.totp_secret_ct
            secret = _open(rt, session, account.id, sealed)
            # Re-enrolment (``accounts.reenrolment``): the password the account had, and the
            # ones before it, may not come back.
            replaced = account.password_hash
            earlier = password_history.earlier_hashes(session, account.id)
    if live is None:
        raise InvalidEnrolmentError()
    check_password_rules(new_password, min_length=rt.settings.password_min_length,
                         email=account.email, name=account.name)
    step = totp_step(rt, secret, totp_code, 0)
    if step is None:
        raise CodeMismatchError()
    if replaced is not None and password_history.is_reused([replaced, *earlier], new_password):
        raise PasswordReusedError()
    password_hash = hash_password(new_password)
    now = rt.clock.now()
    with rt.store.transaction() as session:
        used = cast(CursorResult[Any], session.execute(
            update(EnrolmentRow).where(EnrolmentRow.token_hash == token_hash,
                                       EnrolmentRow.used_at.is_(None),
                                       EnrolmentRow.expires_at > now)
            .values(used_at=now).execution_options(synchronize_session=False)))
        activated = cast(CursorResult[Any], session.execute(
            update(Account).where(Account.id == account.id, Account.status == ENROLLING,
                                  Account.totp_secret_ct == sealed)
            .values(status=ACTIVE, password_hash=password_hash, password_changed_at=now,
                    must_change_password=False, totp_last_step=step)
            .execution_options(synchronize_session=False)))
        if used.rowcount != 1 or activated.rowcount != 1:
            # Used, expired or restarted meanwhile: this transaction rolls back whole.
            raise InvalidEnrolmentError()
        password_history.remember(session, account.id, replaced, now)
        codes = add_recovery_codes(rt, session, account.id, now)
        auditor.record(session, Action.ENROLMENT_FINISH, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=account.id,
                       count=RECOVERY_CODES)
    return codes


def add_recovery_codes(rt: Runtime, session: Session, account_id: str,
                       now: datetime) -> list[str]:
    """Ten new recovery codes for ``account_id`` (their keyed hashes added to ``session``);
    the codes themselves, to be shown once to their owner."""
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    pepper = credential_pepper(rt, session)
    session.add_all(RecoveryCodeRow(code_hash=keyed_hash(pepper, normalise(code)),
                                    account_id=account_id, created_at=now)
                    for code in codes)
    return codes


def _open(rt: Runtime, session: Session, account_id: str, sealed: bytes | None) -> bytes | None:
    """The TOTP secret ``start`` gave (None before any start)."""
    if sealed is None:
        return None
    try:
        return totp_cipher(rt, session).open(sealed, bind("totp", account_id))
    except DecryptionError:
        return None


def _recovery_code() -> str:
    groups = ("".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_GROUP))
              for _ in range(_RECOVERY_GROUPS))
    return "-".join(groups)


def normalise(code: str) -> str:
    """A recovery code as it is hashed: upper case, without dashes or spaces."""
    return code.replace("-", "").replace(" ", "").upper()


def looks_like_recovery_code(code: str) -> bool:
    return len(normalise(code)) == _RECOVERY_GROUPS * _RECOVERY_GROUP


def recovery_hash(rt: Runtime, session: Session, code: str) -> bytes:
    return keyed_hash(credential_pepper(rt, session), normalise(code))


def unused_recovery_code(rt: Runtime, session: Session, account_id: str,
                         code: str) -> bytes | None:
    """The keyed hash of ``code`` when it is one of ``account_id``'s unused recovery codes,
    else None. A code of the right shape proves nothing by itself: taken for a second factor
    before its claim, it let the password alone clear the lockout (a password change refused
    for its new password) and so guess TOTP codes without end."""
    if not looks_like_recovery_code(code):
        return None
    code_hash = recovery_hash(rt, session, code)
    found = session.scalar(select(RecoveryCodeRow.account_id).where(
        RecoveryCodeRow.code_hash == code_hash, RecoveryCodeRow.account_id == account_id,
        RecoveryCodeRow.used_at.is_(None)))
    return code_hash if found is not None else None


def claim_recovery_code(session: Session, account_id: str, code_hash: bytes,
                        now: datetime) -> bool:
    """Use up a recovery code of ``account_id``: one conditional write, so a code is used
    once even when two sign-ins carry it at the same moment."""
    used = cast(CursorResult[Any], session.execute(
        update(RecoveryCodeRow).where(RecoveryCodeRow.code_hash == code_hash,
                                      RecoveryCodeRow.account_id == account_id,
                                      RecoveryCodeRow.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False)))
    return used.rowcount == 1
