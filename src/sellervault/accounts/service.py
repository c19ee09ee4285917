"""Account operations: first administrator, people and services, login, bearer tokens.

Every operation records its security event in the same transaction as its change. A failed
login commits its failure (event and counter) before the error is raised, so the attempt
is never lost with the rollback.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import pyotp
from sqlalchemy import CursorResult, bindparam, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.access.roles import Grant, Principal, Role
from sellervault.accounts import (
    api_keys,
    approvals,
    enrolment,
    identity,
    lifecycle,
    lockout,
    login_failures,
    networks,
    password_age,
    password_history,
)
from sellervault.accounts import grants as grants_
from sellervault.accounts.errors import (
    AccountConflictError,
    AccountError,
    AccountNotFoundError,
    AccountRequestError,
    AlreadyInitializedError,
    InvalidCredentialsError,
    PasswordChangeRequiredError,
    PasswordReusedError,
    PasswordTooRecentError,
    UnauthenticatedError,
)
from sellervault.accounts.identity import normalize_email
from sellervault.accounts.keys import (
    CREDENTIAL_PEPPER,
    credential_pepper,
    totp_cipher,
    totp_step,
)
from sellervault.accounts.models import Account, ApiKey, GrantRow, SessionRow
from sellervault.accounts.passwords import check_password_rules, hash_password, verify_password
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Outcome, Reason, TargetType
from sellervault.crypto.aead import bind
from sellervault.crypto.credentials import (
    API_KEY_PREFIX,
    SESSION_PREFIX,
    keyed_hash,
    new_token,
)
from sellervault.crypto.errors import DecryptionError
from sellervault.runtime import Runtime
from sellervault.store.prepared import Prepared

LAST_SEEN_RESOLUTION = timedelta(seconds=30)
ENDED_SESSIONS_KEPT = timedelta(days=1)  # (sessions-purge)
# Fixed: a lookalike or +tag of an existing email is refused with the same words.
ACCOUNT_EXISTS = "this mailbox has an account already (the same email, a lookalike or a +tag)"
# The unique constraints that say "this mailbox has an account" when a concurrent creation
# committed first (PostgreSQL names the constraint; SQLite names the column).
_MAILBOX_UNIQUES = {"ix_accounts_mailbox_key": "accounts.mailbox_key",
                    "uq_accounts_email": "accounts.email"}


@dataclass(frozen=True, slots=True)
class FirstAdmin:
    """The first administrator, who ran ``init`` and chose their password there: their TOTP
    secret and ten recovery codes, shown to them once."""

    id: str
    totp_secret: str
    recovery_codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NewPerson:
    """A person created by an administrator: nothing of theirs but the enrolment token,
    which the administrator hands over and which works once (``accounts.enrolment``)."""

    id: str
    enrolment_token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class NewService:
    id: str
    api_key: str
    status: str
    """``pending`` for a service that may read PII until a second person approves it
    (``accounts.approvals``); ``active`` otherwise."""


@dataclass(frozen=True, slots=True)
class IssuedSession:
    account_id: str
    token: str
    expires_at: datetime


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)




def _check_name(name: str) -> None:
    """Generic names are compared up to lookalikes (``identity.is_generic``): "Admin" with a
    Cyrillic capital A is still the shared "admin" the policy refuses."""
    if identity.is_blank(name) or identity.is_generic(name):
        raise AccountRequestError("an account needs the name of the one person or service it is")


def _check_identity(email: str, name: str) -> identity.Mailbox:
    """A person's name and email, refused if generic or malformed; the email's mailbox."""
    _check_name(name)
    mailbox = identity.mailbox(email)
    if mailbox is None or mailbox.is_generic:
        raise AccountRequestError("a person's account needs their own email address")
    return mailbox


def check_new_person(*, email: str, name: str, password: str,
                     min_length: int) -> identity.Mailbox:
    """Everything that can refuse a new person, checked before anything is written; the
    email's mailbox."""
    mailbox = _check_identity(email, name)
    check_password_rules(password, min_length=min_length, email=mailbox.email, name=name)
    return mailbox


def _is_mailbox_conflict(exc: IntegrityError) -> bool:
    """Whether ``exc`` is a unique constraint on the account's mailbox or email (a concurrent
    creation of the same mailbox committed first), not some other integrity failure."""
    constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
    if constraint is not None:  # PostgreSQL
        return constraint in _MAILBOX_UNIQUES
    return any(column in str(exc.orig) for column in _MAILBOX_UNIQUES.values())


def _add_person(rt: Runtime, session: Session, *, email: str, name: str,
                password: str | None, created_by: str | None) -> tuple[str, str | None]:
    """Add a person to ``session``, flushed: a mailbox that has an account already (checked
    first, and by the unique index for a concurrent creation) is a conflict. With a password
    (the first administrator, who runs ``init`` themselves) the account is active and gets
    its TOTP secret; without one it is enrolling: the person sets both (``enrolment``)."""
    if password is None:
        mailbox = _check_identity(email, name)
    else:
        mailbox = check_new_person(email=email, name=name, password=password,
                                   min_length=rt.settings.password_min_length)
    if session.scalar(select(Account.id).where(Account.mailbox_key == mailbox.key)) is not None:
        raise AccountConflictError(ACCOUNT_EXISTS)
    account_id = _new_id("acc_")
    totp_secret = pyotp.random_base32() if password is not None else None
    now = rt.clock.now()
    session.add(Account(
        id=account_id, kind="person", email=mailbox.email, mailbox_key=mailbox.key,
        name=name.strip(), status="active" if password is not None else enrolment.ENROLLING,
        password_hash=hash_password(password) if password is not None else None,
        must_change_password=False,
        password_changed_at=now if password is not None else None,
        totp_secret_ct=None if totp_secret is None else totp_cipher(rt, session).seal(
            totp_secret.encode(), bind("totp", account_id)),
        totp_last_step=0, failed_logins=0, created_by=created_by, created_at=now,
    ))
    try:
        session.flush()
    except IntegrityError as exc:
        if not _is_mailbox_conflict(exc):
            raise
        # The caller's transaction rolls back as the error leaves it: nothing is kept.
        raise AccountConflictError(ACCOUNT_EXISTS) from None
    return account_id, totp_secret


def _add_grants(session: Session, account_id: str, grants: list[Grant], by: str | None,
                now: datetime) -> None:
    for grant in dict.fromkeys(grants):
        session.add(GrantRow(account_id=account_id, role=grant.role.value, tenant=grant.tenant,
                             granted_by=by, granted_at=now))


def create_first_admin(rt: Runtime, auditor: Auditor, *, email: str, name: str,
                       password: str) -> FirstAdmin:
    """The only account `init` makes: no default credentials exist anywhere (policy A1)."""
    with rt.store.transaction() as session:
        if session.scalar(select(func.count()).select_from(Account)):
            raise AlreadyInitializedError()
        account_id, totp_secret = _add_person(rt, session, email=email, name=name,
                                              password=password, created_by=None)
        assert totp_secret is not None
        session.flush()
        _add_grants(session, account_id, [Grant(Role.ADMIN, "*")], None, rt.clock.now())
        codes = enrolment.add_recovery_codes(rt, session, account_id, rt.clock.now())
        auditor.record(session, Action.ACCOUNTS_CREATE, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=account_id, count=1)
    return FirstAdmin(account_id, totp_secret, tuple(codes))


def create_person(rt: Runtime, auditor: Auditor, creator: Principal, *, email: str, name: str,
                  grants: list[Grant]) -> NewPerson:
    """A person who enrols themselves with the token returned (72 hours, once)."""
    grants_.check(grants)
    with rt.store.transaction() as session:
        account_id, _ = _add_person(rt, session, email=email, name=name, password=None,
                                    created_by=creator.id)
        _add_grants(session, account_id, grants, creator.id, rt.clock.now())
        issued = enrolment.issue(rt, session, account_id)
        auditor.record(session, Action.ACCOUNTS_CREATE, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=account_id, count=len(grants))
    return NewPerson(account_id, issued.token, issued.expires_at)


def create_service(rt: Runtime, auditor: Auditor, creator: Principal, *, name: str,
                   grants: list[Grant]) -> NewService:
    _check_name(name)
    grants_.check(grants, "service")
    status = approvals.service_status(grants)
    now = rt.clock.now()
    with rt.store.transaction() as session:
        account_id = _new_id("svc_")
        session.add(Account(id=account_id, kind="service", email=None, name=name.strip(),
                            status=status, must_change_password=False, totp_last_step=0,
                            failed_logins=0, created_by=creator.id, created_at=now))
        session.flush()
        _add_grants(session, account_id, grants, creator.id, rt.clock.now())
        api_key = api_keys.issue(rt, session, account_id).api_key
        auditor.record(session, Action.ACCOUNTS_CREATE, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=account_id, count=len(grants),
                       reason=Reason.APPROVAL_REQUIRED if status == approvals.PENDING
                       else None)
    return NewService(account_id, api_key, status)


@dataclass(frozen=True, slots=True)
class _Held:
    """What a sign-in checks of the account it took an attempt on, read in that attempt's
    transaction, so that the password is checked after it commits."""

    id: str
    email: str | None
    name: str
    password_hash: str | None
    must_change_password: bool
    """Set by the system: the password may not sign in until its owner changes it."""
    password_expired: bool
    """The password is older than ``password_age.MAX_AGE``."""
    password_changed_at: datetime | None
    totp_secret: bytes | None
    totp_last_step: int
    allowed_networks: str | None
    """The networks the account may be used from (``networks``); None: any the deployment
    admits."""

    @property
    def must_change(self) -> bool:
        """The password may only be changed, not sign in: a forced change (which the
        minimum age does not hold back)."""
        return self.must_change_password or self.password_expired


@dataclass(frozen=True, slots=True)
class _Proof:
    """The outcome of checking a person's password and code against a taken attempt."""

    attempt: lockout.Attempt | None
    held: _Held | None
    step: int | None
    """The TOTP step the code is valid for; None when anything failed."""
    locked_id: str | None = None
    """The account, when the attempt was refused because it is locked."""
    recovery: bytes | None = None
    """The keyed hash of one of the account's unused recovery codes, offered with the right
    password in place of a TOTP code (its claim uses it up, once, however many try)."""
    outside_networks: bool = False
    """The password was right but the address is outside the account's networks: refused
    like a wrong password, logged as ``address_not_allowed``."""

    @property
    def proven(self) -> bool:
        return self.held is not None and (self.step is not None or self.recovery is not None)

    @property
    def target_id(self) -> str | None:
        return self.held.id if self.held is not None else self.locked_id


def _held(rt: Runtime, session: Session, account_id: str) -> _Held:
    account = session.get_one(Account, account_id)
    secret = None
    if account.totp_secret_ct is not None:
        try:
            secret = totp_cipher(rt, session).open(account.totp_secret_ct,
                                                    bind("totp", account.id))
        except DecryptionError:
            secret = None  # a secret moved from another account: a failed login, never a 500
    return _Held(account.id, account.email, account.name, account.password_hash,
                 account.must_change_password,
                 password_age.expired(account.password_changed_at, rt.clock.now()),
                 account.password_changed_at, secret, account.totp_last_step,
                 account.allowed_networks)


def _prove(rt: Runtime, auditor: Auditor, action: Action, email: str, password: str,
           totp_code: str) -> _Proof:
    """Check a person's password and code, lockout first (``accounts.lockout``): refused
    outright when the address has failed too often (429) or the counters cannot tell (503);
    otherwise an attempt is taken (and committed) before the password is checked, outside
    any transaction. Exactly one Argon2 verification whatever the case (a dummy hash when no
    attempt was taken: an unknown, disabled or locked account), so the time taken does not
    say which."""
    refusal = login_failures.refusal_for(rt.counters, auditor.actor.source_ip)
    if refusal is not None:
        with rt.store.transaction() as session:
            auditor.record(session, action, Outcome.DENIED, target_type=TargetType.ACCOUNT,
                           status=refusal.status, reason=refusal.code)
        raise refusal
    now = rt.clock.now()
    email = normalize_email(email)
    with rt.store.transaction() as session:
        attempt = lockout.take_attempt(session, email, now)
        held = _held(rt, session, attempt.account_id) if attempt is not None else None
        locked_id = None if attempt is not None else lockout.locked_account(session, email, now)
        offered = (enrolment.unused_recovery_code(rt, session, attempt.account_id, totp_code)
                   if attempt is not None else None)
    password_ok = verify_password(held.password_hash if held else None, password)
    if held is None or not password_ok:
        return _Proof(attempt, held, None, locked_id)
    if not networks.admits(held.allowed_networks, auditor.actor.source_ip):
        return _Proof(attempt, held, None, locked_id, outside_networks=True)
    step = totp_step(rt, held.totp_secret, totp_code, held.totp_last_step)
    return _Proof(attempt, held, step, locked_id, offered if step is None else None)


def _claim(rt: Runtime, session: Session, proof: _Proof) -> bool:
    """Use up what proved the second factor: the TOTP step, or the recovery code (after
    taking the account's row as ``_claim_step`` does, with the password hash unchanged)."""
    assert proof.held is not None
    if proof.step is not None:
        return _claim_step(session, proof.held, proof.step)
    if proof.recovery is None or not _hold_account(session, proof.held):
        return False
    return enrolment.claim_recovery_code(session, proof.held.id, proof.recovery,
                                         rt.clock.now())


def _hold_account(session: Session, held: _Held) -> bool:
    """Take the account's row until the transaction ends, if it is still active with the
    password hash just verified (what ``_claim_step`` checks, for a recovery code)."""
    held_row = cast(CursorResult[Any], session.execute(
        update(Account)
        .where(Account.id == held.id, Account.password_hash == held.password_hash,
               Account.status == "active")
        .values(password_hash=Account.password_hash)
        .execution_options(synchronize_session=False)))
    return held_row.rowcount == 1


def _claim_step(session: Session, held: _Held, step: int) -> bool:
    """Use up the TOTP step ``step`` and lock the account row until the transaction ends, in
    one statement that changes the row only if nobody used this step (or a later one) and the
    password hash is still the one just verified. Under READ COMMITTED two logins with one
    code both passed a check made on their earlier reads; here the second one's UPDATE waits
    for the first's commit, re-reads the row and changes nothing. A login that overlaps a
    password change is refused the same way, or its session is revoked by the change (which
    claims the same row before revoking)."""
    claimed = cast(CursorResult[Any], session.execute(
        update(Account)
        .where(Account.id == held.id, Account.totp_last_step < step,
               Account.password_hash == held.password_hash, Account.status == "active")
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)))
    return claimed.rowcount == 1


def _refuse(rt: Runtime, auditor: Auditor, action: Action, proof: _Proof) -> Exception:
    """Record a failed attempt and say how to answer it: 401 ``invalid_credentials`` for every
    failure (unknown account, wrong password or code, locked, disabled), 503 if the address's
    failure could not be counted. The attempt's own event, then the lock or the disabling it
    caused. The counters are written first, outside the transaction: the account's row and
    SQLite's one writer are not held while Redis answers."""
    unavailable = login_failures.count_failure(rt.counters, auditor.actor.source_ip)
    refusal: Exception = unavailable or InvalidCredentialsError()
    status = getattr(refusal, "status", 401)
    with rt.store.transaction() as session:
        reason = (Reason.ACCOUNT_LOCKED if proof.locked_id is not None
                  else Reason.ADDRESS_NOT_ALLOWED if proof.outside_networks and not unavailable
                  else getattr(refusal, "code", Reason.INVALID_CREDENTIALS))
        auditor.record(session, action, Outcome.DENIED, target_type=TargetType.ACCOUNT,
                       target_id=proof.target_id, status=status, reason=reason)
        attempt = proof.attempt
        if attempt is not None and attempt.disables and lockout.disable(session,
                                                                        attempt.account_id):
            # (as every disabling does: re-enabling it must not bring a stolen session back)
            lifecycle.end_sessions(session, attempt.account_id, rt.clock.now())
            auditor.record(session, Action.ACCOUNTS_DISABLE, Outcome.SUCCESS,
                           target_type=TargetType.ACCOUNT, target_id=attempt.account_id,
                           reason=Reason.TOO_MANY_FAILURES, count=attempt.since_success)
        elif attempt is not None and attempt.locks:
            auditor.record(session, Action.ACCOUNTS_LOCK, Outcome.SUCCESS,
                           target_type=TargetType.ACCOUNT, target_id=attempt.account_id,
                           reason=Reason.TOO_MANY_FAILURES, count=attempt.failures)
    return refusal


def login(rt: Runtime, auditor: Auditor, *, email: str, password: str,
          totp_code: str) -> IssuedSession:
    """Password and TOTP (or a recovery code) for a person, under the lockout (``_prove``);
    a TOTP code or recovery code is accepted once (replays are refused, also when they
    arrive at the same moment: ``_claim``)."""
    proof = _prove(rt, auditor, Action.SESSION_CREATE, email, password, totp_code)
    if proof.held is not None and proof.proven:
        held = proof.held
        with rt.store.transaction() as session:
            if held.must_change and proof.step is not None:
                # The code is not consumed: the person changes the password with it next.
                lockout.succeeded(session, held.id)
                auditor.record(session, Action.SESSION_CREATE, Outcome.DENIED,
                               target_type=TargetType.ACCOUNT, target_id=held.id, status=403,
                               reason=Reason.PASSWORD_EXPIRED if held.password_expired
                               else PasswordChangeRequiredError.code)
                must_change = True
            elif not held.must_change and _claim(rt, session, proof):
                lockout.succeeded(session, held.id)
                issued = _issue_session(rt, session, held.id)
                auditor.record(session, Action.SESSION_CREATE, Outcome.SUCCESS,
                               target_type=TargetType.ACCOUNT, target_id=held.id,
                               reason=Reason.RECOVERY_CODE if proof.step is None else None)
                return issued
            else:
                must_change = False  # the code was used meanwhile: a failure like any other
        if must_change:
            raise PasswordChangeRequiredError()
    raise _refuse(rt, auditor, Action.SESSION_CREATE, proof)


def _issue_session(rt: Runtime, session: Session, account_id: str) -> IssuedSession:
    now = rt.clock.now()
    token = new_token(SESSION_PREFIX)
    expires_at = now + timedelta(hours=rt.settings.session_absolute_hours)
    session.add(SessionRow(token_hash=keyed_hash(credential_pepper(rt, session), token),
                           account_id=account_id, created_at=now, last_seen_at=now,
                           expires_at=expires_at))
    session.execute(update(Account).where(Account.id == account_id)
                    .values(last_used_at=now).execution_options(synchronize_session=False))
    return IssuedSession(account_id, token, expires_at)


def _check_new_password(rt: Runtime, held: _Held, new_password_value: str) -> None:
    """Every rule a changed password meets: its age (unless the change is forced), the
    rules on the password itself, and none of the account's last ten."""
    if not held.must_change and password_age.too_recent(held.password_changed_at,
                                                        rt.clock.now()):
        raise PasswordTooRecentError()
    check_password_rules(new_password_value, min_length=rt.settings.password_min_length,
                         email=held.email, name=held.name)
    with rt.store.transaction() as session:
        earlier = password_history.earlier_hashes(session, held.id)
    if password_history.is_reused([held.password_hash, *earlier], new_password_value):
        raise PasswordReusedError()


def change_password(rt: Runtime, auditor: Auditor, *, email: str, current_password: str,
                    totp_code: str, new_password_value: str) -> None:
    """A new password with the current one and a TOTP code or recovery code (used up), under
    the same lockout as a sign-in (it is as good an oracle for the password); every open
    session of the account ends with it, including one a concurrent login is issuing
    (``_claim_step``). The password rules, the history and the minimum age are checked only
    once the current password and code are proven: a refusal says nothing to a guesser."""
    proof = _prove(rt, auditor, Action.PASSWORD_CHANGE, email, current_password, totp_code)
    if proof.held is None or not proof.proven:
        raise _refuse(rt, auditor, Action.PASSWORD_CHANGE, proof)
    held = proof.held
    try:
        _check_new_password(rt, held, new_password_value)
    except AccountError as exc:
        with rt.store.transaction() as session:  # the credentials were right: no failure
            lockout.succeeded(session, held.id)
            auditor.record(session, Action.PASSWORD_CHANGE, Outcome.DENIED,
                           target_type=TargetType.ACCOUNT, target_id=held.id,
                           status=exc.status, reason=exc.code)
        raise
    new_hash = hash_password(new_password_value)
    with rt.store.transaction() as session:
        if _claim(rt, session, proof):
            now = rt.clock.now()
            lockout.succeeded(session, held.id)
            # The claim holds the row and checked the hash is still held.password_hash.
            password_history.remember(session, held.id, held.password_hash, now)
            session.execute(update(Account).where(Account.id == held.id).values(
                password_hash=new_hash, password_changed_at=now, must_change_password=False)
                .execution_options(synchronize_session=False))
            lifecycle.end_sessions(session, held.id, now)  # a changed password ends them
            auditor.record(session, Action.PASSWORD_CHANGE, Outcome.SUCCESS,
                           target_type=TargetType.ACCOUNT, target_id=held.id)
            return
    raise _refuse(rt, auditor, Action.PASSWORD_CHANGE,
                  _Proof(proof.attempt, held, None))


def _principal(session: Session, account: Account) -> Principal:
    rows = session.execute(
        select(GrantRow.role, GrantRow.tenant).where(GrantRow.account_id == account.id)
    ).all()
    return Principal(account.id, account.kind, tuple(Grant(Role(r), t) for r, t in rows))


# The per-request authentication path: one statement (the credential, its account and the
# account's grants, joined) through a connection with no transaction of its own, since one
# statement is a consistent read; a write only when a last-seen time is more than
# LAST_SEEN_RESOLUTION old.
_ACCOUNT_AND_GRANTS = (Account.kind, Account.status, Account.last_used_at, Account.ends_at,
                       Account.allowed_networks, GrantRow.role, GrantRow.tenant)
_SESSION_LOOKUP = Prepared(
    select(SessionRow.account_id, SessionRow.expires_at, SessionRow.last_seen_at,
           SessionRow.revoked_at, *_ACCOUNT_AND_GRANTS)
    .join(Account, Account.id == SessionRow.account_id)
    .outerjoin(GrantRow, GrantRow.account_id == Account.id)
    .where(SessionRow.token_hash == bindparam("h"))
)
_API_KEY_LOOKUP = Prepared(
    select(ApiKey.account_id, ApiKey.expires_at, ApiKey.revoked_at, *_ACCOUNT_AND_GRANTS)
    .join(Account, Account.id == ApiKey.account_id)
    .outerjoin(GrantRow, GrantRow.account_id == Account.id)
    .where(ApiKey.key_hash == bindparam("h"))
)
_TOUCH_SESSION = Prepared(update(SessionRow).where(SessionRow.token_hash == bindparam("h"))
                          .values(last_seen_at=bindparam("now")))
_TOUCH_ACCOUNT = Prepared(update(Account).where(Account.id == bindparam("a"))
                          .values(last_used_at=bindparam("now")))


def _request_pepper(rt: Runtime) -> bytes:
    pepper = rt.keyring.cached_system_key(CREDENTIAL_PEPPER)
    if pepper is None:  # first use in this process
        with rt.store.transaction() as session:
            pepper = credential_pepper(rt, session)
    return pepper


@dataclass(frozen=True, slots=True)
class _TokenLookup:
    """What to ask the database about a bearer token (its keyed hash, never the token)."""

    statement: Prepared
    params: dict[str, Any]
    is_session: bool
    now: datetime
    source_ip: str | None


@dataclass(frozen=True, slots=True)
class Credential:
    """A live bearer token: whose it is, and when it ends."""

    principal: Principal
    expires_at: datetime
    is_session: bool

    def expires_soon(self, now: datetime) -> bool:
        """An API key within 30 days of its end (``api_keys.WARN_BEFORE``): its responses
        say so."""
        return not self.is_session and api_keys.expires_soon(self.expires_at, now)


def _token_lookup(pepper: bytes, token: str, now: datetime,
                  source_ip: str | None) -> _TokenLookup:
    is_session = token.startswith(SESSION_PREFIX)
    if not (is_session or token.startswith(API_KEY_PREFIX)):
        raise UnauthenticatedError()
    return _TokenLookup(_SESSION_LOOKUP if is_session else _API_KEY_LOOKUP,
                        {"h": keyed_hash(pepper, token)}, is_session, now, source_ip)


Touch = tuple[Prepared, dict[str, Any]]


def _credential_of(rt: Runtime, lookup: _TokenLookup,
                   rows: list[Any]) -> tuple[Credential, list[Touch]]:
    """The live credential (else 401: revoked, expired, its account not active, past its end
    date or used from outside its networks), and the last-seen updates due."""
    if not rows:
        raise UnauthenticatedError()
    found = rows[0]
    now = lookup.now
    if (found.revoked_at is not None or found.expires_at <= now or found.status != "active"
            or (found.ends_at is not None and found.ends_at <= now)
            or not networks.admits(found.allowed_networks, lookup.source_ip)):
        raise UnauthenticatedError()
    touches: list[Touch] = []
    if lookup.is_session:
        if found.last_seen_at + timedelta(minutes=rt.settings.session_idle_minutes) <= now:
            raise UnauthenticatedError()
        if now - found.last_seen_at >= LAST_SEEN_RESOLUTION:
            touches.append((_TOUCH_SESSION, {"h": lookup.params["h"], "now": now}))
    if found.last_used_at is None or now - found.last_used_at >= LAST_SEEN_RESOLUTION:
        touches.append((_TOUCH_ACCOUNT, {"a": found.account_id, "now": now}))
    grants = tuple(Grant(Role(row.role), row.tenant) for row in rows if row.role is not None)
    principal = Principal(found.account_id, found.kind, grants)
    return Credential(principal, found.expires_at, lookup.is_session), touches


async def authenticate(rt: Runtime, token: str, source_ip: str | None = None) -> Credential:
    """The live credential a bearer token is, used from ``source_ip``: a session or an API
    key, of an active account. One statement, then each last-seen update due as a statement
    of its own."""
    pepper = rt.keyring.cached_system_key(CREDENTIAL_PEPPER)
    if pepper is None:  # first use in this process: read (or make) it
        pepper = await rt.store.offload(_request_pepper, rt)
    lookup = _token_lookup(pepper, token, rt.clock.now(), source_ip)
    async with rt.store.connect() as db:
        rows = await db.all(lookup.statement, lookup.params)
        credential, touches = _credential_of(rt, lookup, rows)
        for statement, params in touches:
            await db.execute(statement, params)
    return credential


def list_accounts(rt: Runtime, auditor: Auditor) -> list[tuple[Account, list[Grant]]]:
    with rt.store.transaction() as session:
        accounts = session.scalars(select(Account).order_by(Account.created_at)).all()
        listing = [(account, list(_principal(session, account).grants)) for account in accounts]
        auditor.record(session, Action.ACCOUNTS_LIST, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, count=len(listing))
        return listing


@dataclass(frozen=True, slots=True)
class AccountDetail:
    account: Account
    grants: list[Grant]
    api_keys: list[api_keys.KeyInfo]


def show_account(rt: Runtime, auditor: Auditor, account_id: str) -> AccountDetail:
    """One account, its grants and its API keys (never a secret: no hash, no key)."""
    with rt.store.transaction() as session:
        account = session.get(Account, account_id)
        if account is None:
            raise AccountNotFoundError()
        detail = AccountDetail(account, list(_principal(session, account).grants),
                               api_keys.keys_of(session, account_id))
        auditor.record(session, Action.ACCOUNTS_READ, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id=account_id)
        return detail


def purge_sessions(rt: Runtime) -> int:
    """Delete the rows of sessions that ended more than ``ENDED_SESSIONS_KEPT`` ago (their
    absolute expiry passed, their idle timeout passed, or they were revoked); how many.

    Such a row authenticates nothing (``authenticate`` refuses it) and only keeps a keyed hash
    of a dead token and an account's last activity. The record of a session is not the row but
    the security log: its ``session:create`` event, and the password change that revoked it,
    stay there after the row is gone. A day's grace keeps recent rows for an operator looking
    at what just happened. Run hourly by the ``sessions-purge`` job (``jobs.registry``), whose
    ``jobs:run`` event carries the count; one statement, a scan of a table that holds about a
    day of sessions."""
    cutoff = rt.clock.now() - ENDED_SESSIONS_KEPT
    idle = timedelta(minutes=rt.settings.session_idle_minutes)
    with rt.store.transaction() as session:
        purged = cast(CursorResult[Any], session.execute(
            delete(SessionRow).where(or_(SessionRow.expires_at < cutoff,
                                         SessionRow.revoked_at < cutoff,
                                         SessionRow.last_seen_at < cutoff - idle))
            .execution_options(synchronize_session=False)))
    return purged.rowcount
