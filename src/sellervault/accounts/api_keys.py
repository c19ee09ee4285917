"""A service's API keys: issued with the service, rotated with an overlap its operator
chooses, revoked, and never older than ``api_key_max_age_days`` (365 at most).

A service that reads PII is not rotated by an administrator (409): its key was released by
a second person (``approvals``), and a new one must be too, so it is replaced by a new
service. Rotation issues a new key (shown once) and shortens every live key of the service to end
after the overlap: the seller application is redeployed with the new key within it, and
the old one stops by itself (an overlap of 0 stops it at once). Two rotations at the same
moment queue on the service's row, so neither shortens a key the other just issued. A key
within 30 days of its end is announced: every response to a request it authenticates
carries ``X-SellerVault-Key-Expires``, and the ``api-key-expiry`` job records one
``api-keys:expiring`` event per key for whoever watches the log.

Revoking or shortening is seen by every server process at the next request: keys are read
from the database on every request (``service.authenticate``), never cached.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.access.roles import Principal, Role
from sellervault.accounts import approvals
from sellervault.accounts.errors import (
    AccountNotFoundError,
    AccountStateError,
    ApiKeyNotFoundError,
    ApiKeyStateError,
    PiiServiceKeyError,
)
from sellervault.accounts.keys import credential_pepper
from sellervault.accounts.models import Account, ApiKey, GrantRow
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import SYSTEM_ACTOR, Outcome, TargetType
from sellervault.crypto.credentials import API_KEY_PREFIX, keyed_hash, new_token
from sellervault.runtime import Runtime

WARN_BEFORE = timedelta(days=30)
MAX_OVERLAP = timedelta(days=30)
_ROTATABLE = (approvals.ACTIVE, approvals.PENDING)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown of a key: never the key, nor its hash."""

    key_id: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key_id: str
    api_key: str
    expires_at: datetime


def expires_soon(expires_at: datetime, now: datetime) -> bool:
    return expires_at - now <= WARN_BEFORE


def issue(rt: Runtime, session: Session, account_id: str) -> IssuedKey:
    """A new key for ``account_id`` in the caller's transaction (shown once, stored as its
    keyed hash)."""
    now = rt.clock.now()
    api_key = new_token(API_KEY_PREFIX)
    key_id = secrets.token_hex(8)
    expires_at = now + timedelta(days=rt.settings.api_key_max_age_days)
    session.add(ApiKey(key_hash=keyed_hash(credential_pepper(rt, session), api_key),
                       key_id=key_id, account_id=account_id, created_at=now,
                       expires_at=expires_at))
    return IssuedKey(key_id, api_key, expires_at)


def keys_of(session: Session, account_id: str) -> list[KeyInfo]:
    return [KeyInfo(row.key_id, row.created_at, row.expires_at, row.revoked_at)
            for row in session.scalars(select(ApiKey).where(ApiKey.account_id == account_id)
                                       .order_by(ApiKey.created_at, ApiKey.key_id))]


def rotate(rt: Runtime, auditor: Auditor, admin: Principal, account_id: str,
           overlap: timedelta) -> IssuedKey:
    """A new key for the service ``account_id``; its other live keys end ``overlap`` from
    now (or at their own expiry, if sooner)."""
    if not timedelta(0) <= overlap <= MAX_OVERLAP:
        raise ValueError("overlap out of range")  # the API and CLI bound it first
    now = rt.clock.now()
    with rt.store.transaction() as session:
        status = session.scalar(select(Account.status).where(
            Account.id == account_id, Account.kind == "service").with_for_update())
        if status is None:
            raise AccountNotFoundError()
        if status not in _ROTATABLE:
            raise AccountStateError()
        if session.scalar(select(GrantRow.role).where(
                GrantRow.account_id == account_id, GrantRow.role == Role.PII_READER.value)
                .limit(1)) is not None:
            raise PiiServiceKeyError()
        ends = now + overlap
        shortened = cast(CursorResult[Any], session.execute(
            update(ApiKey).where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None),
                                 ApiKey.expires_at > ends)
            .values(expires_at=ends).execution_options(synchronize_session=False)))
        issued = issue(rt, session, account_id)
        auditor.record(session, Action.API_KEYS_ROTATE, Outcome.SUCCESS,
                       target_type=TargetType.API_KEY, target_id=issued.key_id,
                       count=shortened.rowcount)
    return issued


def revoke(rt: Runtime, auditor: Auditor, admin: Principal, account_id: str,
           key_id: str) -> None:
    """End the key ``key_id`` of ``account_id`` now (404 if it has no such key, 409 if it has
    ended already)."""
    now = rt.clock.now()
    with rt.store.transaction() as session:
        revoked = cast(CursorResult[Any], session.execute(
            update(ApiKey).where(ApiKey.account_id == account_id, ApiKey.key_id == key_id,
                                 ApiKey.revoked_at.is_(None), ApiKey.expires_at > now)
            .values(revoked_at=now).execution_options(synchronize_session=False)))
        if revoked.rowcount != 1:
            exists = session.scalar(select(func.count()).select_from(ApiKey).where(
                ApiKey.account_id == account_id, ApiKey.key_id == key_id))
            raise ApiKeyStateError() if exists else ApiKeyNotFoundError()
        auditor.record(session, Action.API_KEYS_REVOKE, Outcome.SUCCESS,
                       target_type=TargetType.API_KEY, target_id=key_id)


def revoke_all(session: Session, account_id: str, now: datetime) -> int:
    """End every live key of ``account_id`` now, in the caller's transaction; how many."""
    revoked = cast(CursorResult[Any], session.execute(
        update(ApiKey).where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None),
                             ApiKey.expires_at > now)
        .values(revoked_at=now).execution_options(synchronize_session=False)))
    return revoked.rowcount


def warn_expiring(rt: Runtime) -> int:
    """The ``api-key-expiry`` job: one ``api-keys:expiring`` event for each live key that
    ends within 30 days and has not been announced yet; how many. The claim (setting
    ``expiry_warned_at``) and the event are one transaction, so two processes running the
    job announce each key once."""
    now = rt.clock.now()
    auditor = Auditor(rt.audit, SYSTEM_ACTOR)
    with rt.store.transaction() as session:
        due = session.execute(
            update(ApiKey).where(ApiKey.revoked_at.is_(None), ApiKey.expires_at > now,
                                 ApiKey.expires_at <= now + WARN_BEFORE,
                                 ApiKey.expiry_warned_at.is_(None))
            .values(expiry_warned_at=now)
            .returning(ApiKey.key_id, ApiKey.account_id, ApiKey.expires_at)
            .execution_options(synchronize_session=False)).all()
        for key_id, _account_id, expires_at in due:
            auditor.record(session, Action.API_KEYS_EXPIRING, Outcome.SUCCESS,
                           target_type=TargetType.API_KEY, target_id=key_id,
                           count=max(0, (expires_at - now).days))
    return len(due)
