"""Password age (PARAMETERS.md): at least a day, at most 365 days.

- A person changes their own password at most once a day (the day counts from enrolment
  too): a second change is refused with 409 ``password_too_recent`` and nothing changes; the
  credentials were right, so it is no failed sign-in. A day later it goes through.
- A password 365 days old no longer signs in: the right password and code are answered with
  403 ``password_change_required`` (the event says ``password_expired``), the code is not used
  up, and the person changes the password with it, at once (a forced change is not held back
  by the minimum age). A wrong password on an expired account is the usual 401: expiry is
  told only to who proved the password.
- A change the system forces (``must_change_password``) is not held back either.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from sellervault import bootstrap
from sellervault.access.roles import Grant, Role
from sellervault.accounts import password_age
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import (
    InvalidCredentialsError,
    PasswordChangeRequiredError,
    PasswordTooRecentError,
)
from sellervault.accounts.models import Account
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.runtime import Runtime
from tests.support import Person, admin_of, make_person, system_auditor

DAY = password_age.MIN_AGE.total_seconds()
CHANGED = "a second passphrase of mine"
THIRD = "yet another passphrase of mine"


@pytest.fixture
def carol(runtime: Runtime, initialized: bootstrap.InitResult) -> Person:
    return make_person(runtime, admin_of(initialized), email="carol.chen@example.test",
                       name="Carol Chen", grants=[Grant(Role.ANALYST, "acme")])


def fresh_code(rt: Runtime, person: Person) -> str:
    """A code for a step not used yet (the clock moves on a step first)."""
    assert isinstance(rt.clock, ManualClock)
    rt.clock.advance(30)
    return pyotp.TOTP(person.totp_secret).at(rt.clock.timestamp())


def change(rt: Runtime, person: Person, current: str, new: str, code: str | None = None) -> None:
    accounts.change_password(rt, system_auditor(rt), email=person.email,
                             current_password=current,
                             totp_code=code or fresh_code(rt, person), new_password_value=new)


def login(rt: Runtime, person: Person, password: str, code: str | None = None) -> None:
    accounts.login(rt, system_auditor(rt), email=person.email, password=password,
                   totp_code=code or fresh_code(rt, person))


def account_row(rt: Runtime, account_id: str) -> Account:
    with rt.store.transaction() as session:
        row = session.get_one(Account, account_id)
        session.expunge(row)
        return row


def reasons(rt: Runtime, action: str) -> list[tuple[str, str | None]]:
    with rt.store.transaction() as session:
        rows = session.query(EventRow).filter(EventRow.action == action).order_by(EventRow.seq)
        return [(row.outcome, row.reason) for row in rows]


# -- the rules themselves --------------------------------------------------------------------

def test_age_limits_are_one_day_and_365_days() -> None:
    set_at = datetime(2026, 1, 1, tzinfo=UTC)
    assert password_age.too_recent(set_at, set_at + timedelta(hours=23, minutes=59))
    assert not password_age.too_recent(set_at, set_at + timedelta(days=1))
    assert not password_age.expired(set_at, set_at + timedelta(days=364, hours=23))
    assert password_age.expired(set_at, set_at + timedelta(days=365))
    assert password_age.expired(None, set_at)  # a password of unknown age is renewed
    assert not password_age.too_recent(None, set_at)


# -- minimum age -----------------------------------------------------------------------------

def test_a_password_changes_at_most_once_a_day(runtime: Runtime, carol: Person,
                                               clock: ManualClock) -> None:
    with pytest.raises(PasswordTooRecentError):  # enrolled a moment ago
        change(runtime, carol, carol.password, CHANGED)
    clock.advance(DAY)
    change(runtime, carol, carol.password, CHANGED)
    before = account_row(runtime, carol.id)
    with pytest.raises(PasswordTooRecentError) as refused:
        change(runtime, carol, CHANGED, THIRD)
    assert (refused.value.status, refused.value.code) == (409, "password_too_recent")
    after = account_row(runtime, carol.id)
    assert (after.password_hash, after.failed_logins) == (before.password_hash, 0)
    assert reasons(runtime, "password:change") == [
        ("denied", "password_too_recent"), ("success", None), ("denied", "password_too_recent")]
    clock.advance(DAY)
    change(runtime, carol, CHANGED, THIRD)
    login(runtime, carol, THIRD)


def test_a_forced_change_is_not_held_back(runtime: Runtime, carol: Person) -> None:
    with runtime.store.transaction() as session:
        session.get_one(Account, carol.id).must_change_password = True
    code = fresh_code(runtime, carol)
    with pytest.raises(PasswordChangeRequiredError):
        login(runtime, carol, carol.password, code)
    change(runtime, carol, carol.password, CHANGED, code)  # the same code: it was not used
    login(runtime, carol, CHANGED)


# -- maximum age -----------------------------------------------------------------------------

def test_an_expired_password_must_be_changed_before_it_signs_in(
        runtime: Runtime, carol: Person, clock: ManualClock) -> None:
    enrolled_at = account_row(runtime, carol.id).password_changed_at
    assert enrolled_at is not None
    clock.advance((enrolled_at + password_age.MAX_AGE - clock.now()).total_seconds() - 60)
    login(runtime, carol, carol.password)  # half a minute before: still fine
    clock.advance(30)
    code = fresh_code(runtime, carol)
    with pytest.raises(PasswordChangeRequiredError) as refused:
        login(runtime, carol, carol.password, code)
    assert (refused.value.status, refused.value.code) == (403, "password_change_required")
    assert reasons(runtime, "session:create")[-1] == ("denied", "password_expired")
    change(runtime, carol, carol.password, CHANGED, code)  # the code was not used up
    assert account_row(runtime, carol.id).password_changed_at == clock.now()
    login(runtime, carol, CHANGED)


def test_an_expired_account_tells_a_guesser_nothing(runtime: Runtime, carol: Person,
                                                    clock: ManualClock) -> None:
    clock.advance(password_age.MAX_AGE.total_seconds())
    with pytest.raises(InvalidCredentialsError):
        login(runtime, carol, "not her passphrase at all")
    with pytest.raises(InvalidCredentialsError):  # right password, wrong code
        login(runtime, carol, carol.password, "000000" if fresh_code(runtime, carol) != "000000"
              else "111111")
