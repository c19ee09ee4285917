"""Failed logins in the shared counters (``accounts/login_failures.py``, used by ``login``), on
SQLite and PostgreSQL:

- A failed login (wrong password, wrong or replayed code) counts once against the account
  and once against the source address; one for an email no account has counts against the
  address only. Successes, and a right password whose one-time password must be changed
  first, count nothing; a success resets neither count.
- An account's failures are forgotten 12 hours after each one, an address's after a day.
- Failed logins at the same moment are each counted, once.
- Counters that cannot be reached refuse the failed login with ``CountersUnavailableError``
  (503), after its event (denied, 503, ``counters_unavailable``) and the database's own count
  are committed: the attempt is never lost. Until the lockout lands, a login that succeeds
  does not read the counters, so it still succeeds.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from sqlalchemy import select

from sellervault import bootstrap
from sellervault.access.roles import Grant, Principal, Role
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import InvalidCredentialsError, PasswordChangeRequiredError
from sellervault.accounts.login_failures import (
    FAILED_LOGINS_PER_ACCOUNT,
    FAILED_LOGINS_PER_ADDRESS,
)
from sellervault.accounts.models import Account, SessionRow
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.counters.errors import CountersUnavailableError
from sellervault.counters.local import LocalCounters
from sellervault.counters.redis import RedisCounters
from sellervault.runtime import Runtime
from tests.support import ADMIN_EMAIL, ADMIN_PASSWORD

ADDRESS = "203.0.113.9"
WRONG_PASSWORD = "not the password 1"
OTHER_ADDRESS = "2001:db8::9"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def counting(runtime: Runtime, clock: ManualClock) -> Runtime:
    """The test's runtime with its counters on a ManualClock. In-process counters: the
    implementations behave alike (``tests/counters/test_conformance.py``), and the server
    tests count in Redis (``tests/web/test_shared_counters.py``)."""
    return Runtime(runtime.settings, runtime.store, runtime.keyring, clock, LocalCounters(clock))


def from_address(rt: Runtime, address: str = ADDRESS) -> Auditor:
    return Auditor(rt.audit, Actor(Channel.API, source_ip=address))


def code(rt: Runtime, secret: str) -> str:
    """The TOTP code of the runtime's clock's step (login reads that clock)."""
    return pyotp.TOTP(secret).at(rt.clock.timestamp())


def fail_login(rt: Runtime, email: str = ADMIN_EMAIL, password: str = WRONG_PASSWORD,
               totp: str = "000000", address: str = ADDRESS) -> None:
    with pytest.raises(InvalidCredentialsError):
        accounts.login(rt, from_address(rt, address), email=email, password=password,
                       totp_code=totp)


def counts(rt: Runtime, account_id: str, address: str = ADDRESS) -> tuple[int, int]:
    return (rt.counters.count(FAILED_LOGINS_PER_ACCOUNT, account_id),
            rt.counters.count(FAILED_LOGINS_PER_ADDRESS, address))


def login_events(rt: Runtime) -> list[Any]:
    with rt.store.engine.connect() as connection:
        return list(connection.execute(select(EventRow).where(
            EventRow.action == "session:create").order_by(EventRow.seq)))


def failed_logins_column(rt: Runtime, account_id: str) -> int:
    with rt.store.engine.connect() as connection:
        return int(connection.scalar(
            select(Account.failed_logins).where(Account.id == account_id)) or 0)


def test_each_failed_login_counts_against_the_account_and_the_address(
        counting: Runtime, initialized: bootstrap.InitResult) -> None:
    admin = initialized.admin_id
    fail_login(counting)  # wrong password
    fail_login(counting, password=ADMIN_PASSWORD, totp="000000")  # wrong code
    assert counts(counting, admin) == (2, 2)
    fail_login(counting, address=OTHER_ADDRESS)
    assert counts(counting, admin) == (3, 2)
    assert counts(counting, admin, OTHER_ADDRESS) == (3, 1)
    assert failed_logins_column(counting, admin) == 3  # the database counts as before


def test_an_unknown_email_counts_against_the_address_only(
        counting: Runtime, initialized: bootstrap.InitResult) -> None:
    fail_login(counting, email="nobody.here@example.test")
    assert counts(counting, initialized.admin_id) == (0, 1)


def test_successes_count_nothing_and_reset_nothing(
        counting: Runtime, initialized: bootstrap.InitResult) -> None:
    fail_login(counting)
    accounts.login(counting, from_address(counting), email=ADMIN_EMAIL,
                   password=ADMIN_PASSWORD, totp_code=code(counting, initialized.totp_secret))
    assert counts(counting, initialized.admin_id) == (1, 1)


def test_a_person_who_must_change_the_password_first_is_not_a_failure(
        counting: Runtime, initialized: bootstrap.InitResult) -> None:
    admin = Principal(initialized.admin_id, "person", (Grant(Role.ADMIN, "*"),))
    pat = accounts.create_person(counting, from_address(counting), admin,
                                 email="pat.picker@example.test", name="Pat Picker",
                                 grants=[Grant(Role.ANALYST, "acme")])
    assert pat.one_time_password is not None
    with pytest.raises(PasswordChangeRequiredError):
        accounts.login(counting, from_address(counting), email="pat.picker@example.test",
                       password=pat.one_time_password, totp_code=code(counting, pat.totp_secret))
    assert counts(counting, pat.id) == (0, 0)


def test_an_accounts_failures_last_12_hours_an_addresss_a_day(
        counting: Runtime, initialized: bootstrap.InitResult, clock: ManualClock) -> None:
    fail_login(counting)
    clock.advance(timedelta(hours=12) - timedelta(seconds=1))
    assert counts(counting, initialized.admin_id) == (1, 1)
    clock.advance(timedelta(seconds=1))
    assert counts(counting, initialized.admin_id) == (0, 1)
    clock.advance(timedelta(hours=12))
    assert counts(counting, initialized.admin_id) == (0, 0)


def test_failed_logins_at_the_same_moment_are_each_counted_once(
        counting: Runtime, initialized: bootstrap.InitResult) -> None:
    attempts = 6
    at_once = threading.Barrier(attempts)

    def attempt(_: int) -> None:
        at_once.wait()
        fail_login(counting)

    with ThreadPoolExecutor(attempts) as pool:
        list(pool.map(attempt, range(attempts)))
    assert counts(counting, initialized.admin_id) == (attempts, attempts)
    assert failed_logins_column(counting, initialized.admin_id) == attempts


def test_unreachable_counters_refuse_the_failed_login_after_recording_it(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    clock = ManualClock()
    unreachable = RedisCounters.from_url("redis://127.0.0.1:1/0", clock, b"k" * 32)
    rt = Runtime(runtime.settings, runtime.store, runtime.keyring, clock, unreachable)
    before = len(login_events(rt))
    with pytest.raises(CountersUnavailableError):
        accounts.login(rt, from_address(rt), email=ADMIN_EMAIL, password=WRONG_PASSWORD,
                       totp_code="000000")
    [event] = login_events(rt)[before:]
    assert (event.outcome, event.status, event.reason, event.target_id, event.source_ip) == (
        "denied", 503, "counters_unavailable", initialized.admin_id, ADDRESS)
    assert failed_logins_column(rt, initialized.admin_id) == 1
    with rt.store.engine.connect() as connection:
        assert list(connection.execute(select(SessionRow))) == []

    # Today a right password and code do not need the counters (the lockout will read them).
    accounts.login(rt, from_address(rt), email=ADMIN_EMAIL, password=ADMIN_PASSWORD,
                   totp_code=code(rt, initialized.totp_secret))
    unreachable.close()
