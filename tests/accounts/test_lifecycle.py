"""accounts.lifecycle: signing out, disabling and re-enabling, on SQLite and PostgreSQL, from
the side of whoever holds a credential that should have stopped working.

- A session signed out is refused at the next request; signing out twice is refused; an API
  key cannot sign itself out.
- A disabled account's session and API key are refused at the next request; its sessions
  are revoked, so re-enabling brings back the key but not the sessions. An administrator
  cannot disable their own account. Disabling what is disabled, or enabling what is active,
  is a 409; an unknown account a 404. Each change is one event naming actor and account.
- Re-enabling an account that ten failed sign-ins disabled clears its count and lock.
- Two administrators disabling one account at the same moment: one change, one event.
- The vault keeps an active administrator: the last one cannot be disabled or offboarded,
  and two administrators disabling each other at the same moment leave one.
- Offboarding a leaver ends everything at once (sessions, API keys, enrolment token,
  recovery codes, grants), whatever the account's status; it can be re-enabled, holding
  nothing.
- An end date stops access at that moment (sign-in and credentials, before any job runs);
  the ``account-end-dates`` job then disables the account, once. An end date in the past is
  refused; one can be cleared.
- The ``inactive-accounts`` job disables accounts unused for 90 days, and not a day
  earlier; never every active administrator.
- The rules disable only active accounts: a pending PII service given an end date is not
  turned active by re-enabling it. Nobody ends the last administrator with no end date, nor
  sets their own end date.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pyotp
import pytest
from sqlalchemy import select

from sellervault import bootstrap
from sellervault.access.roles import Grant, Principal, Role
from sellervault.accounts import enrolment, lifecycle, lockout
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import (
    AccountNotFoundError,
    AccountRequestError,
    AccountStateError,
    InvalidCredentialsError,
    InvalidEnrolmentError,
    LastAdministratorError,
    NotASessionError,
    SecurityOfficerRequiredError,
    UnauthenticatedError,
)
from sellervault.accounts.models import Account, GrantRow, SessionRow
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.runtime import Runtime
from tests.support import Person, admin_of, make_person, system_auditor

DAY = 24 * 3600


def authenticate(rt: Runtime, token: str) -> Principal:
    return rt.store.call(accounts.authenticate, rt, token).principal


def sign_in(rt: Runtime, person: Person) -> str:
    assert isinstance(rt.clock, ManualClock)
    rt.clock.advance(30)
    return accounts.login(rt, system_auditor(rt), email=person.email, password=person.password,
                          totp_code=pyotp.TOTP(person.totp_secret).at(rt.clock.timestamp())
                          ).token


def events(rt: Runtime, action: str) -> list[Any]:
    with rt.store.engine.connect() as connection:
        return list(connection.execute(select(EventRow).where(EventRow.action == action)))


def status(rt: Runtime, account_id: str) -> str:
    with rt.store.engine.connect() as connection:
        return str(connection.scalar(select(Account.status).where(Account.id == account_id)))


@pytest.fixture
def pat(runtime: Runtime, initialized: bootstrap.InitResult) -> Person:
    return make_person(runtime, admin_of(initialized), email="pat.picker@example.test",
                       name="Pat Picker", grants=[Grant(Role.ANALYST, "acme")])


def test_a_signed_out_session_is_refused_and_cannot_sign_out_again(
        runtime: Runtime, pat: Person) -> None:
    token = sign_in(runtime, pat)
    principal = authenticate(runtime, token)
    lifecycle.sign_out(runtime, system_auditor(runtime), principal, token)
    with pytest.raises(UnauthenticatedError):
        authenticate(runtime, token)
    with pytest.raises(UnauthenticatedError):
        lifecycle.sign_out(runtime, system_auditor(runtime), principal, token)
    [event] = events(runtime, "session:delete")
    assert (event.target_id, event.outcome) == (pat.id, "success")


def test_another_accounts_session_cannot_be_signed_out_with_it(
        runtime: Runtime, initialized: bootstrap.InitResult, pat: Person) -> None:
    token = sign_in(runtime, pat)
    with pytest.raises(UnauthenticatedError):
        lifecycle.sign_out(runtime, system_auditor(runtime), admin_of(initialized), token)
    authenticate(runtime, token)  # still live


def test_an_api_key_cannot_sign_itself_out(runtime: Runtime,
                                           initialized: bootstrap.InitResult) -> None:
    service = accounts.create_service(runtime, system_auditor(runtime), admin_of(initialized),
                                      name="label printer", grants=[Grant(Role.INGEST, "acme")])
    principal = authenticate(runtime, service.api_key)
    with pytest.raises(NotASessionError):
        lifecycle.sign_out(runtime, system_auditor(runtime), principal, service.api_key)
    authenticate(runtime, service.api_key)


def test_disabling_stops_sessions_and_keys_at_once_and_enabling_brings_back_only_keys(
        runtime: Runtime, initialized: bootstrap.InitResult, pat: Person) -> None:
    admin = admin_of(initialized)
    token = sign_in(runtime, pat)
    service = accounts.create_service(runtime, system_auditor(runtime), admin,
                                      name="label printer", grants=[Grant(Role.INGEST, "acme")])
    for account_id in (pat.id, service.id):
        lifecycle.disable(runtime, system_auditor(runtime), admin, account_id)
        assert status(runtime, account_id) == "disabled"
    for credential in (token, service.api_key):
        with pytest.raises(UnauthenticatedError):
            authenticate(runtime, credential)
    with pytest.raises(InvalidCredentialsError):
        sign_in(runtime, pat)
    with runtime.store.engine.connect() as connection:
        assert connection.scalar(select(SessionRow.revoked_at).where(
            SessionRow.account_id == pat.id)) is not None
    assert sorted(e.target_id for e in events(runtime, "accounts:disable")) == sorted(
        [pat.id, service.id])
    for account_id in (pat.id, service.id):
        lifecycle.enable(runtime, system_auditor(runtime), admin, account_id)
    authenticate(runtime, service.api_key)  # the key works again
    with pytest.raises(UnauthenticatedError):
        authenticate(runtime, token)  # the session does not come back
    authenticate(runtime, sign_in(runtime, pat))
    assert len(events(runtime, "accounts:enable")) == 2


def test_status_changes_that_do_not_apply_change_nothing(
        runtime: Runtime, initialized: bootstrap.InitResult, pat: Person) -> None:
    admin = admin_of(initialized)
    with pytest.raises(AccountRequestError):
        lifecycle.disable(runtime, system_auditor(runtime), admin, initialized.admin_id)
    with pytest.raises(AccountStateError):
        lifecycle.enable(runtime, system_auditor(runtime), admin, pat.id)  # active
    with pytest.raises(AccountNotFoundError):
        lifecycle.disable(runtime, system_auditor(runtime), admin,
                          "acc_000000000000000000000000")
    lifecycle.disable(runtime, system_auditor(runtime), admin, pat.id)
    with pytest.raises(AccountStateError):
        lifecycle.disable(runtime, system_auditor(runtime), admin, pat.id)
    assert status(runtime, initialized.admin_id) == "active"
    assert len(events(runtime, "accounts:disable")) == 1
    assert events(runtime, "accounts:enable") == []


OFFICER = Principal("acc_officer", "person", (Grant(Role.SECURITY_OFFICER, "*"),))


def test_an_account_a_canary_locked_is_re_enabled_by_a_security_officer_only(
        runtime: Runtime, initialized: bootstrap.InitResult, pat: Person) -> None:
    """The administrator may be the insider the canary caught: 403, nothing changes; the
    security officer re-enables. The reason goes with the lock: an administrator's own
    disabling later is an administrator's to undo."""
    admin = admin_of(initialized)
    assert Grant(Role.SECURITY_OFFICER, "*") not in admin.grants
    assert lifecycle.disable_for_canary(runtime, pat.id)
    with pytest.raises(SecurityOfficerRequiredError):
        lifecycle.enable(runtime, system_auditor(runtime), admin, pat.id)
    assert status(runtime, pat.id) == "disabled" and events(runtime, "accounts:enable") == []
    lifecycle.enable(runtime, system_auditor(runtime), OFFICER, pat.id)
    assert status(runtime, pat.id) == "active"
    lifecycle.disable(runtime, system_auditor(runtime), admin, pat.id)
    lifecycle.enable(runtime, system_auditor(runtime), admin, pat.id)
    assert status(runtime, pat.id) == "active"


def test_an_account_another_rule_disabled_is_re_enabled_by_an_administrator(
        runtime: Runtime, initialized: bootstrap.InitResult, pat: Person) -> None:
    assert lifecycle.disable_for_volume(runtime, pat.id)
    lifecycle.enable(runtime, system_auditor(runtime), admin_of(initialized), pat.id)
    assert status(runtime, pat.id) == "active"


def test_enabling_after_ten_failures_clears_the_count_and_the_lock(
        runtime: Runtime, initialized: bootstrap.InitResult, pat: Person,
        clock: ManualClock) -> None:
    for failures in range(1, lockout.DISABLE_AFTER + 1):
        with pytest.raises(InvalidCredentialsError):
            accounts.login(runtime, system_auditor(runtime), email=pat.email,
                           password="a wrong password entirely", totp_code="000000")
        clock.advance(lockout.lock_for(failures) or 0)
    assert status(runtime, pat.id) == "disabled"
    lifecycle.enable(runtime, system_auditor(runtime), admin_of(initialized), pat.id)
    with runtime.store.engine.connect() as connection:
        row = connection.execute(select(Account.failed_logins, Account.locked_until)
                                 .where(Account.id == pat.id)).one()
    assert tuple(row) == (0, None)
    authenticate(runtime, sign_in(runtime, pat))


def test_two_administrators_disabling_one_account_at_once_make_one_change(
        runtime: Runtime, initialized: bootstrap.InitResult, pat: Person) -> None:
    second = make_person(runtime, admin_of(initialized), email="ada.second@example.test",
                         name="Ada Second", grants=[Grant(Role.ADMIN, "*")])
    admins = [admin_of(initialized), Principal(second.id, "person", (Grant(Role.ADMIN, "*"),))]
    at_once = threading.Barrier(len(admins))

    def attempt(admin: Principal) -> str:
        at_once.wait()
        try:
            lifecycle.disable(runtime, system_auditor(runtime), admin, pat.id)
        except AccountStateError:
            return "conflict"
        return "disabled"

    with ThreadPoolExecutor(len(admins)) as pool:
        outcomes = sorted(pool.map(attempt, admins))
    assert outcomes == ["conflict", "disabled"]
    assert len(events(runtime, "accounts:disable")) == 1


def second_admin(runtime: Runtime, initialized: bootstrap.InitResult) -> Principal:
    second = make_person(runtime, admin_of(initialized), email="ada.second@example.test",
                         name="Ada Second", grants=[Grant(Role.ADMIN, "*")])
    return Principal(second.id, "person", (Grant(Role.ADMIN, "*"),))


def test_the_last_active_administrator_is_kept(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    second = second_admin(runtime, initialized)
    lifecycle.disable(runtime, system_auditor(runtime), admin_of(initialized), second.id)
    for change in (lifecycle.disable, lifecycle.offboard):
        with pytest.raises(LastAdministratorError):
            change(runtime, system_auditor(runtime), second, initialized.admin_id)
    assert status(runtime, initialized.admin_id) == "active"


def test_two_administrators_disabling_each_other_at_once_leave_one(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    """Each check alone passes (the other is an administrator too); under READ COMMITTED,
    counting without locking the administrators' rows first lets both through. Five rounds:
    a race lost once is a defect."""
    first, second = admin_of(initialized), second_admin(runtime, initialized)

    def attempt(pair: tuple[Principal, Principal]) -> str:
        at_once.wait()
        try:
            lifecycle.disable(runtime, system_auditor(runtime), pair[0], pair[1].id)
        except LastAdministratorError:
            return "refused"
        return "disabled"

    for _ in range(5):
        at_once = threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            outcomes = sorted(pool.map(attempt, [(first, second), (second, first)]))
        assert outcomes == ["disabled", "refused"]
        statuses = {a.id: status(runtime, a.id) for a in (first, second)}
        assert sorted(statuses.values()) == ["active", "disabled"]
        [disabled] = [a for a, s in statuses.items() if s == "disabled"]
        lifecycle.enable(runtime, system_auditor(runtime), first if disabled != first.id
                         else second, disabled)


def test_offboarding_ends_every_credential_and_grant_at_once(
        runtime: Runtime, initialized: bootstrap.InitResult, pat: Person) -> None:
    admin = admin_of(initialized)
    token = sign_in(runtime, pat)
    service = accounts.create_service(runtime, system_auditor(runtime), admin,
                                      name="label printer", grants=[Grant(Role.INGEST, "acme")])
    done = lifecycle.offboard(runtime, system_auditor(runtime), admin, pat.id)
    assert (done.sessions, done.api_keys, done.grants) == (1, 0, 1)
    done = lifecycle.offboard(runtime, system_auditor(runtime), admin, service.id)
    assert (done.sessions, done.api_keys, done.grants) == (0, 1, 1)
    for credential in (token, service.api_key):
        with pytest.raises(UnauthenticatedError):
            authenticate(runtime, credential)
    with pytest.raises(InvalidCredentialsError):  # the right password and a recovery code
        accounts.login(runtime, system_auditor(runtime), email=pat.email,
                       password=pat.password, totp_code=pat.recovery_codes[0])
    with runtime.store.engine.connect() as connection:
        assert connection.scalar(select(GrantRow.role).where(
            GrantRow.account_id.in_([pat.id, service.id]))) is None
        ends = connection.scalar(select(Account.ends_at).where(Account.id == pat.id))
    assert ends == runtime.clock.now()
    assert [e.target_id for e in events(runtime, "accounts:offboard")] == [pat.id, service.id]
    lifecycle.enable(runtime, system_auditor(runtime), admin, pat.id)
    with pytest.raises(UnauthenticatedError):  # re-enabled, it holds no credential...
        authenticate(runtime, token)
    principal = authenticate(runtime, sign_in(runtime, pat))  # ...until it signs in again
    assert principal.grants == ()  # and no grant
    assert lifecycle.disable_ended(runtime) == 0  # its end date went with the re-enabling


def test_offboarding_an_enrolling_person_ends_the_enrolment_token(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    admin = admin_of(initialized)
    created = accounts.create_person(runtime, system_auditor(runtime), admin,
                                     email="newt.starter@example.test", name="Newt Starter",
                                     grants=[Grant(Role.ANALYST, "acme")])
    lifecycle.offboard(runtime, system_auditor(runtime), admin, created.id)
    with pytest.raises(InvalidEnrolmentError):
        enrolment.start(runtime, system_auditor(runtime), created.enrolment_token)
    assert status(runtime, created.id) == "disabled"


def test_nobody_offboards_themselves_or_an_unknown_account(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    admin = admin_of(initialized)
    with pytest.raises(AccountRequestError):
        lifecycle.offboard(runtime, system_auditor(runtime), admin, initialized.admin_id)
    with pytest.raises(AccountNotFoundError):
        lifecycle.offboard(runtime, system_auditor(runtime), admin,
                           "acc_000000000000000000000000")
    assert events(runtime, "accounts:offboard") == []


def test_access_stops_at_the_end_date_and_the_job_then_disables_the_account(
        runtime: Runtime, initialized: bootstrap.InitResult, pat: Person,
        clock: ManualClock) -> None:
    admin = admin_of(initialized)
    service = accounts.create_service(runtime, system_auditor(runtime), admin,
                                      name="label printer", grants=[Grant(Role.INGEST, "acme")])
    ends_at = clock.now() + timedelta(hours=1)
    for account_id in (pat.id, service.id):
        lifecycle.set_end_date(runtime, system_auditor(runtime), admin, account_id, ends_at)
    token = sign_in(runtime, pat)
    assert lifecycle.disable_ended(runtime) == 0
    clock.set(ends_at)
    for credential in (token, service.api_key):
        with pytest.raises(UnauthenticatedError):
            authenticate(runtime, credential)
    with pytest.raises(InvalidCredentialsError):
        sign_in(runtime, pat)
    assert status(runtime, pat.id) == "active"  # until the job runs: access stopped anyway
    assert lifecycle.disable_ended(runtime) == 2
    assert lifecycle.disable_ended(runtime) == 0
    assert {status(runtime, a) for a in (pat.id, service.id)} == {"disabled"}
    disabled = events(runtime, "accounts:disable")
    assert {(e.target_id, e.reason, e.channel) for e in disabled} == {
        (pat.id, "end_date", "system"), (service.id, "end_date", "system")}


def test_an_end_date_must_be_ahead_and_can_be_cleared(
        runtime: Runtime, initialized: bootstrap.InitResult, pat: Person,
        clock: ManualClock) -> None:
    admin = admin_of(initialized)
    with pytest.raises(AccountRequestError):
        lifecycle.set_end_date(runtime, system_auditor(runtime), admin, pat.id, clock.now())
    with pytest.raises(AccountRequestError):  # ten years and more: a typo, or an overflow
        lifecycle.set_end_date(runtime, system_auditor(runtime), admin, pat.id,
                               datetime.fromisoformat("9999-12-31T23:59:59-23:59"))
    with pytest.raises(AccountRequestError):  # an administrator does not end themselves
        lifecycle.set_end_date(runtime, system_auditor(runtime), admin, initialized.admin_id,
                               clock.now() + timedelta(days=1))
    lifecycle.set_end_date(runtime, system_auditor(runtime), admin, pat.id,
                           clock.now() + timedelta(days=1))
    lifecycle.set_end_date(runtime, system_auditor(runtime), admin, pat.id, None)
    clock.advance(2 * DAY)
    authenticate(runtime, sign_in(runtime, pat))
    assert len(events(runtime, "accounts:end-date")) == 2


def test_accounts_unused_for_ninety_days_are_disabled_and_not_a_day_earlier(
        runtime: Runtime, initialized: bootstrap.InitResult, pat: Person,
        clock: ManualClock) -> None:
    admin = admin_of(initialized)
    second = second_admin(runtime, initialized)
    service = accounts.create_service(runtime, system_auditor(runtime), admin,
                                      name="label printer", grants=[Grant(Role.INGEST, "acme")])
    clock.advance(45 * DAY)
    authenticate(runtime, service.api_key)  # used: its 90 days start again
    clock.advance(45 * DAY - 60)
    assert lifecycle.disable_inactive(runtime) == 0
    clock.advance(120)
    # pat and both administrators are 90 days unused: pat goes, the administrators stay
    # (disabling both would leave the vault with nobody to re-enable anyone)
    assert lifecycle.disable_inactive(runtime) == 1
    assert status(runtime, pat.id) == "disabled"
    assert {status(runtime, a) for a in (initialized.admin_id, second.id)} == {"active"}
    assert status(runtime, service.id) == "active"
    [event] = events(runtime, "accounts:disable")
    assert (event.target_id, event.reason) == (pat.id, "inactive")
    clock.advance(45 * DAY)
    assert lifecycle.disable_inactive(runtime) == 1  # now the service too


def test_a_pending_pii_service_is_not_laundered_to_active_by_an_end_date(
        runtime: Runtime, initialized: bootstrap.InitResult, clock: ManualClock) -> None:
    """The review's finding: the end-date job disabled the pending service, and enabling
    made it active, its pii-reader key working with no second person. The jobs disable only
    active accounts; a pending one stays pending (and authenticates nothing)."""
    admin = admin_of(initialized)
    pending = accounts.create_service(runtime, system_auditor(runtime), admin,
                                      name="label printer",
                                      grants=[Grant(Role.PII_READER, "acme")])
    lifecycle.set_end_date(runtime, system_auditor(runtime), admin, pending.id,
                           clock.now() + timedelta(minutes=1))
    clock.advance(120)
    assert lifecycle.disable_ended(runtime) == 0
    assert status(runtime, pending.id) == "pending"
    with pytest.raises(AccountStateError):
        lifecycle.enable(runtime, system_auditor(runtime), admin, pending.id)
    with pytest.raises(UnauthenticatedError):
        authenticate(runtime, pending.api_key)


def test_no_administrator_ends_the_last_lasting_one_nor_their_own_end_date(
        runtime: Runtime, initialized: bootstrap.InitResult, clock: ManualClock) -> None:
    """Two admins giving each other an end date would leave none an hour later; an admin
    with an end date could offboard the only one without; one could clear their own."""
    first, second = admin_of(initialized), second_admin(runtime, initialized)
    soon = clock.now() + timedelta(hours=1)
    lifecycle.set_end_date(runtime, system_auditor(runtime), first, second.id, soon)
    with pytest.raises(LastAdministratorError):
        lifecycle.set_end_date(runtime, system_auditor(runtime), second, first.id, soon)
    for change in (lifecycle.offboard, lifecycle.disable):
        with pytest.raises(LastAdministratorError):
            change(runtime, system_auditor(runtime), second, first.id)
    with pytest.raises(AccountRequestError):
        lifecycle.set_end_date(runtime, system_auditor(runtime), second, second.id, None)
    assert status(runtime, first.id) == "active"
