"""accounts.lockout: the account lockout of PARAMETERS.md, as ``login`` applies it, on SQLite
and PostgreSQL, from the guesser's side.

- Five failures lock the account: for 60 s, then one more try, then 120 s, 180 s...; while
  locked even the right password and code are refused, exactly like a wrong one (401), and
  no password is checked. A success clears the count.
- The count is forgotten 12 hours after the last failure.
- Ten failures without a success disable the account (an event names it) until an
  administrator re-enables it, also when the guesser waits out the twelve hours between
  rounds (that count is forgotten only by a success); a success in between starts it again.
- Twenty guesses sent at the same moment get exactly five password checks; after nine
  failures, guesses sent at the same moment get exactly one, and the account is disabled.
- An unknown account, a wrong password, a wrong code, a locked account and a disabled one
  take the same time to refuse, within what a test can tell (one Argon2 verification each).
"""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from sqlalchemy import select, update

from sellervault import bootstrap
from sellervault.access.roles import Grant, Role
from sellervault.accounts import lockout
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import InvalidCredentialsError
from sellervault.accounts.models import Account, SessionRow
from sellervault.accounts.passwords import hash_password
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.runtime import Runtime
from tests.support import ADMIN_EMAIL, ADMIN_PASSWORD, admin_of, make_person

WRONG = "not the password at all"


def who(rt: Runtime, n: int = 0) -> Auditor:
    return Auditor(rt.audit, Actor(Channel.API, source_ip=f"198.51.100.{n % 250 + 1}"))


def code(rt: Runtime, secret: str) -> str:
    return pyotp.TOTP(secret).at(rt.clock.timestamp())


def guess(rt: Runtime, password: str = WRONG, totp: str = "000000", n: int = 0,
          email: str = ADMIN_EMAIL) -> None:
    with pytest.raises(InvalidCredentialsError) as refused:
        accounts.login(rt, who(rt, n), email=email, password=password, totp_code=totp)
    assert (refused.value.status, str(refused.value)) == (401, "invalid credentials")


def sign_in(rt: Runtime, initialized: bootstrap.InitResult) -> None:
    accounts.login(rt, who(rt), email=ADMIN_EMAIL, password=ADMIN_PASSWORD,
                   totp_code=code(rt, initialized.totp_secret))
    assert isinstance(rt.clock, ManualClock)
    rt.clock.advance(30)  # the code's step is used


def admin_row(rt: Runtime, initialized: bootstrap.InitResult) -> Any:
    with rt.store.engine.connect() as connection:
        return connection.execute(select(Account.status, Account.failed_logins,
                                         Account.locked_until)
                                  .where(Account.id == initialized.admin_id)).one()


def since_success(rt: Runtime, initialized: bootstrap.InitResult) -> int:
    with rt.store.engine.connect() as connection:
        return int(connection.scalar(select(Account.failures_since_success)
                                     .where(Account.id == initialized.admin_id)))


def fail_in_rounds(rt: Runtime, clock: ManualClock, failures: int) -> None:
    """``failures`` wrong guesses, each after the previous one's lock is over."""
    for n in range(1, failures + 1):
        guess(rt)
        clock.advance(lockout.lock_for(n) or timedelta(0))


def events(rt: Runtime, *actions: str) -> list[Any]:
    with rt.store.engine.connect() as connection:
        return list(connection.execute(select(EventRow).where(EventRow.action.in_(actions))
                                       .order_by(EventRow.seq)))


def test_the_lock_schedule() -> None:
    assert [lockout.lock_for(n) for n in range(1, 5)] == [None] * 4
    assert [lockout.lock_for(n).seconds for n in range(5, 10)] == [60, 120, 180, 240, 300]
    assert lockout.lock_for(100) == timedelta(minutes=15)  # the ceiling
    assert lockout.DISABLE_AFTER == 10


def test_four_failures_and_a_success_leave_nothing_behind(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    for _ in range(4):
        guess(runtime)
    sign_in(runtime, initialized)
    assert tuple(admin_row(runtime, initialized)) == ("active", 0, None)


def test_five_failures_lock_the_account_even_against_the_right_password(
        runtime: Runtime, initialized: bootstrap.InitResult, clock: ManualClock) -> None:
    for _ in range(5):
        guess(runtime)
    status, failures, locked_until = admin_row(runtime, initialized)
    assert (status, failures) == ("active", 5)
    assert locked_until == clock.now() + timedelta(seconds=60)
    [lock] = events(runtime, "accounts:lock")
    assert (lock.target_id, lock.reason, lock.count) == (
        initialized.admin_id, "too_many_failures", 5)
    # Locked: the right password and code are refused as a wrong one would be, and not
    # counted; the event says why.
    guess(runtime, ADMIN_PASSWORD, code(runtime, initialized.totp_secret))
    assert admin_row(runtime, initialized).failed_logins == 5
    assert events(runtime, "session:create")[-1].reason == "account_locked"
    # 59 s later still locked; at 60 s, one more try: the right one gets in and clears all.
    clock.advance(59)
    guess(runtime, ADMIN_PASSWORD, code(runtime, initialized.totp_secret))
    clock.advance(1)
    sign_in(runtime, initialized)
    assert tuple(admin_row(runtime, initialized)) == ("active", 0, None)


def test_each_lock_is_a_minute_longer(runtime: Runtime, initialized: bootstrap.InitResult,
                                      clock: ManualClock) -> None:
    for _ in range(5):
        guess(runtime)
    clock.advance(60)  # the first lock is over
    for failures, seconds in ((6, 120), (7, 180), (8, 240)):
        guess(runtime)  # one more try, and a longer lock
        assert admin_row(runtime, initialized).failed_logins == failures
        assert admin_row(runtime, initialized).locked_until == clock.now() + timedelta(
            seconds=seconds)
        clock.advance(seconds - 1)
        guess(runtime)  # still locked: not counted
        assert admin_row(runtime, initialized).failed_logins == failures
        clock.advance(1)


def test_the_count_is_forgotten_twelve_hours_after_the_last_failure(
        runtime: Runtime, initialized: bootstrap.InitResult, clock: ManualClock) -> None:
    for _ in range(4):
        guess(runtime)
    clock.advance(timedelta(hours=12) - timedelta(seconds=1))
    guess(runtime)  # the fifth within 12 hours of the fourth: locked
    assert admin_row(runtime, initialized).locked_until is not None
    clock.advance(timedelta(hours=12))
    guess(runtime)  # 12 hours after the last failure: counting starts again
    assert admin_row(runtime, initialized).failed_logins == 1


def test_ten_failures_disable_the_account_until_an_administrator_acts(
        runtime: Runtime, initialized: bootstrap.InitResult, clock: ManualClock) -> None:
    for failures in range(1, 11):
        guess(runtime)
        clock.advance(lockout.lock_for(failures) or timedelta(0))
    assert admin_row(runtime, initialized).status == "disabled"
    [disabled] = events(runtime, "accounts:disable")
    assert (disabled.target_id, disabled.reason, disabled.count, disabled.outcome) == (
        initialized.admin_id, "too_many_failures", 10, "success")
    clock.advance(timedelta(days=2))
    guess(runtime, ADMIN_PASSWORD, code(runtime, initialized.totp_secret))
    assert admin_row(runtime, initialized).status == "disabled"


def test_the_account_ten_failures_disable_loses_its_sessions_for_good(
        runtime: Runtime, initialized: bootstrap.InitResult, clock: ManualClock) -> None:
    """As every disabling does: a session opened before (perhaps the guesser's, with a
    stolen code) is revoked, so an administrator re-enabling the account brings it back
    neither."""
    session = accounts.login(runtime, who(runtime), email=ADMIN_EMAIL, password=ADMIN_PASSWORD,
                             totp_code=code(runtime, initialized.totp_secret))
    for failures in range(1, 11):
        guess(runtime)
        clock.advance(lockout.lock_for(failures) or timedelta(0))
    assert admin_row(runtime, initialized).status == "disabled"
    with runtime.store.transaction() as db:
        revoked = db.scalar(select(SessionRow.revoked_at).where(
            SessionRow.account_id == session.account_id))
    assert revoked is not None


def test_ten_failures_without_a_success_disable_even_twelve_hours_apart(
        runtime: Runtime, initialized: bootstrap.InitResult, clock: ManualClock) -> None:
    """The lock's count is forgotten after 12 hours; the count that disables is not: a
    guesser who waits between rounds still gets nine guesses in all, not nine a round."""
    fail_in_rounds(runtime, clock, 9)
    clock.advance(timedelta(hours=12))
    guess(runtime)
    assert (admin_row(runtime, initialized).failed_logins, since_success(runtime, initialized),
            admin_row(runtime, initialized).status) == (1, 10, "disabled")
    [disabled] = events(runtime, "accounts:disable")
    assert (disabled.target_id, disabled.reason, disabled.count) == (
        initialized.admin_id, "too_many_failures", 10)


def test_a_success_starts_the_count_that_disables_again(
        runtime: Runtime, initialized: bootstrap.InitResult, clock: ManualClock) -> None:
    fail_in_rounds(runtime, clock, 9)
    sign_in(runtime, initialized)
    assert since_success(runtime, initialized) == 0
    fail_in_rounds(runtime, clock, 9)
    assert (admin_row(runtime, initialized).status, since_success(runtime, initialized)) == (
        "active", 9)


@pytest.fixture
def production_admin(runtime: Runtime, initialized: bootstrap.InitResult,
                     production_passwords: None) -> None:
    """The admin's password hashed again at the product's Argon2 cost (the suite hashes
    cheaply): for the tests whose window or timing is the password check's ~0.1 s."""
    with runtime.store.transaction() as session:
        session.execute(update(Account).where(Account.id == initialized.admin_id).values(
            password_hash=hash_password(ADMIN_PASSWORD)))


@pytest.mark.parametrize("guessers", [8])
def test_after_nine_failures_guesses_at_the_same_moment_get_one_password_check(
        runtime: Runtime, initialized: bootstrap.InitResult, clock: ManualClock,
        guessers: int, production_admin: None) -> None:
    """The tenth attempt since a success locks the account while it is checked, whatever
    the 12-hour count says: the others are refused unchecked, then the account is
    disabled."""
    fail_in_rounds(runtime, clock, 9)
    clock.advance(timedelta(hours=12))  # the lock's count is forgotten
    before = len(events(runtime, "session:create"))
    at_once = threading.Barrier(guessers)

    def attempt(n: int) -> None:
        at_once.wait()
        guess(runtime, f"guess number {n:04d} wrong", n=n)

    with ThreadPoolExecutor(guessers) as pool:
        list(pool.map(attempt, range(guessers)))
    refused = events(runtime, "session:create")[before:]
    checked = [e for e in refused if e.reason == "invalid_credentials"
               and e.target_id == initialized.admin_id]
    assert len(checked) == 1
    assert since_success(runtime, initialized) == lockout.DISABLE_AFTER
    assert admin_row(runtime, initialized).status == "disabled"
    assert len(events(runtime, "accounts:disable")) == 1


@pytest.mark.parametrize("guessers", [20])
def test_guesses_at_the_same_moment_get_exactly_five_password_checks(
        runtime: Runtime, initialized: bootstrap.InitResult, guessers: int,
        production_admin: None) -> None:
    """The attempt is taken by one conditional UPDATE before the password is checked: under
    READ COMMITTED a check made before the write would let every guesser through."""
    at_once = threading.Barrier(guessers)

    def attempt(n: int) -> None:
        at_once.wait()
        guess(runtime, f"guess number {n:04d} wrong", n=n)

    with ThreadPoolExecutor(guessers) as pool:
        list(pool.map(attempt, range(guessers)))
    reasons = [event.reason for event in events(runtime, "session:create")]
    assert reasons.count("invalid_credentials") == lockout.LOCK_AFTER
    assert reasons.count("account_locked") == guessers - lockout.LOCK_AFTER
    assert admin_row(runtime, initialized).failed_logins == lockout.LOCK_AFTER


def _time(attempt: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        attempt()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def test_unknown_wrong_and_locked_accounts_take_the_same_time(
        runtime: Runtime, initialized: bootstrap.InitResult,
        production_admin: None) -> None:
    """The median of each kind of refusal, against a wrong password on a real account: each
    is one Argon2 verification (a dummy hash where there is no account to check), which is
    nearly all of the time; a missing verification would be several times faster."""
    def reset() -> None:
        with runtime.store.transaction() as session:
            lockout.succeeded(session, initialized.admin_id)

    def wrong_password() -> None:
        guess(runtime)
        reset()

    unknown = _time(lambda: guess(runtime, email="nobody.at.all@example.test"), 9)
    wrong = _time(wrong_password, 9)
    wrong_code = _time(lambda: (guess(runtime, ADMIN_PASSWORD, "000000"), reset()), 9)
    for _ in range(5):
        guess(runtime)
    locked = _time(lambda: guess(runtime), 9)
    gone = make_person(runtime, admin_of(initialized), email="gone.away@example.test",
                       name="Gone Away", grants=[Grant(Role.ANALYST, "t1")])
    with runtime.store.transaction() as session:
        assert lockout.disable(session, gone.id)
    disabled = _time(lambda: guess(runtime, gone.password, code(runtime, gone.totp_secret),
                                   email=gone.email), 9)
    for name, measured in (("unknown", unknown), ("wrong code", wrong_code),
                           ("locked", locked), ("disabled", disabled)):
        assert 0.5 < measured / wrong < 2.0, (name, measured, wrong)
