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
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyotp
import pytest
from sqlalchemy import select

from sellervault import bootstrap
from sellervault.access.roles import Grant, Principal, Role
from sellervault.accounts import lifecycle, lockout
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import (
    AccountNotFoundError,
    AccountRequestError,
    AccountStateError,
    InvalidCredentialsError,
    NotASessionError,
    UnauthenticatedError,
)
from sellervault.accounts.models import Account, SessionRow
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.runtime import Runtime
from tests.support import Person, admin_of, make_person, system_auditor


def authenticate(rt: Runtime, token: str) -> Principal:
    return rt.store.call(accounts.authenticate, rt, token)


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
