"""The per-address sign-in throttle (``accounts/login_failures.py``, used by ``login``), on
SQLite and PostgreSQL:

- A failed login (wrong password, wrong code, unknown email, locked account) counts once
  against its source address; a success counts nothing and resets nothing.
- An address's failures are forgotten a day after each one.
- 100 failures from one address in a day: every sign-in from it is refused with 429
  (``login_throttled``, ``Retry-After``), the right password too, and its event recorded;
  other addresses are untouched. Password spraying (one guess at each of many accounts,
  which locks none of them) stops there.
- Failed logins at the same moment are each counted, once.
- Counters that cannot be reached refuse every sign-in with ``CountersUnavailableError``
  (503) after recording its event: nobody signs in unthrottled.
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
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import (
    InvalidCredentialsError,
    LoginThrottledError,
)
from sellervault.accounts.login_failures import FAILED_LOGINS_PER_ADDRESS, LIMIT_PER_ADDRESS
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


def failures(rt: Runtime, address: str = ADDRESS) -> int:
    return rt.counters.count(FAILED_LOGINS_PER_ADDRESS, address)


def login_events(rt: Runtime) -> list[Any]:
    with rt.store.engine.connect() as connection:
        return list(connection.execute(select(EventRow).where(
            EventRow.action == "session:create").order_by(EventRow.seq)))


def failed_logins_column(rt: Runtime, account_id: str) -> int:
    with rt.store.engine.connect() as connection:
        return int(connection.scalar(
            select(Account.failed_logins).where(Account.id == account_id)) or 0)


def test_each_failed_login_counts_against_its_address(
        counting: Runtime, initialized: bootstrap.InitResult) -> None:
    fail_login(counting)  # wrong password
    fail_login(counting, password=ADMIN_PASSWORD, totp="000000")  # wrong code
    fail_login(counting, email="nobody.here@example.test")  # no such account
    assert failures(counting) == 3
    fail_login(counting, address=OTHER_ADDRESS)
    assert (failures(counting), failures(counting, OTHER_ADDRESS)) == (3, 1)


def test_successes_count_nothing_and_reset_nothing(
        counting: Runtime, initialized: bootstrap.InitResult) -> None:
    fail_login(counting)
    accounts.login(counting, from_address(counting), email=ADMIN_EMAIL,
                   password=ADMIN_PASSWORD, totp_code=code(counting, initialized.totp_secret))
    assert failures(counting) == 1


def test_an_addresss_failures_last_a_day(
        counting: Runtime, initialized: bootstrap.InitResult, clock: ManualClock) -> None:
    fail_login(counting)
    clock.advance(timedelta(days=1) - timedelta(seconds=1))
    assert failures(counting) == 1
    clock.advance(timedelta(seconds=1))
    assert failures(counting) == 0


# A hundred sign-ins, each a real Argon2id check (15 s a database): run on PostgreSQL only,
# where a count is shared by processes; SQLite's path is the same code, covered above.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_password_spraying_from_one_address_stops_at_the_limit(
        counting: Runtime, initialized: bootstrap.InitResult, clock: ManualClock) -> None:
    """One guess at each of many accounts locks none of them; the address is what is
    refused: at the hundredth failure, every sign-in from it, the right one too."""
    for n in range(LIMIT_PER_ADDRESS):
        fail_login(counting, email=f"victim{n}@example.test")
    before = len(login_events(counting))
    with pytest.raises(LoginThrottledError) as refused:
        accounts.login(counting, from_address(counting), email=ADMIN_EMAIL,
                       password=ADMIN_PASSWORD, totp_code=code(counting, initialized.totp_secret))
    assert (refused.value.status, refused.value.retry_after) == (429, 3600)
    [event] = login_events(counting)[before:]
    assert (event.outcome, event.status, event.reason, event.source_ip) == (
        "denied", 429, "login_throttled", ADDRESS)
    # Another address signs in; the throttled one again a day after its first failure.
    accounts.login(counting, from_address(counting, OTHER_ADDRESS), email=ADMIN_EMAIL,
                   password=ADMIN_PASSWORD, totp_code=code(counting, initialized.totp_secret))
    clock.advance(timedelta(days=1))
    accounts.login(counting, from_address(counting), email=ADMIN_EMAIL,
                   password=ADMIN_PASSWORD, totp_code=code(counting, initialized.totp_secret))


def test_failed_logins_at_the_same_moment_are_each_counted_once(
        counting: Runtime, initialized: bootstrap.InitResult) -> None:
    attempts = 6
    at_once = threading.Barrier(attempts)

    def attempt(n: int) -> None:
        at_once.wait()
        fail_login(counting, email=f"someone{n}@example.test")

    with ThreadPoolExecutor(attempts) as pool:
        list(pool.map(attempt, range(attempts)))
    assert failures(counting) == attempts


def test_unreachable_counters_refuse_every_sign_in_after_recording_it(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    clock = ManualClock()
    unreachable = RedisCounters.from_url("redis://127.0.0.1:1/0", clock, b"k" * 32)
    rt = Runtime(runtime.settings, runtime.store, runtime.keyring, clock, unreachable)
    before = len(login_events(rt))
    for password in (WRONG_PASSWORD, ADMIN_PASSWORD):  # the right one is refused too
        with pytest.raises(CountersUnavailableError):
            accounts.login(rt, from_address(rt), email=ADMIN_EMAIL, password=password,
                           totp_code=code(rt, initialized.totp_secret))
    events = login_events(rt)[before:]
    assert [(e.outcome, e.status, e.reason, e.source_ip) for e in events] == [
        ("denied", 503, "counters_unavailable", ADDRESS)] * 2
    assert failed_logins_column(rt, initialized.admin_id) == 0  # refused before any attempt
    with rt.store.engine.connect() as connection:
        assert list(connection.execute(select(SessionRow))) == []
    unreachable.close()
