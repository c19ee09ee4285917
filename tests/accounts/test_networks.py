"""accounts.networks: an account restricted to networks of its own, on SQLite and
PostgreSQL, from the side of someone who holds the right credentials in the wrong place.

- The right password and code from outside the account's networks fail exactly like a
  wrong password (the same error), count towards the lockout, and are logged as
  ``address_not_allowed``; from inside, the sign-in works.
- A session or API key used from outside is refused (401); from inside it works; an
  unknown address is outside every restricted account.
- IPv4-mapped IPv6 is the IPv4 address; an empty list lifts the restriction.
- Malformed networks, too many or too long written out, and an administrator's own, are
  refused (422) and change nothing.
"""

from __future__ import annotations

from typing import Any

import pyotp
import pytest
from sqlalchemy import select

from sellervault import bootstrap
from sellervault.access.roles import Grant, Role
from sellervault.accounts import networks
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import (
    AccountNotFoundError,
    AccountRequestError,
    InvalidCredentialsError,
    UnauthenticatedError,
)
from sellervault.accounts.models import Account
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.runtime import Runtime
from tests.support import Person, admin_of, make_person, system_auditor

OFFICE = "203.0.113.0/24"
INSIDE, OUTSIDE = "203.0.113.9", "198.51.100.7"


def sign_in(rt: Runtime, person: Person, source_ip: str) -> str:
    assert isinstance(rt.clock, ManualClock)
    rt.clock.advance(30)
    return accounts.login(rt, system_auditor(rt, source_ip), email=person.email,
                          password=person.password,
                          totp_code=pyotp.TOTP(person.totp_secret).at(rt.clock.timestamp())
                          ).token


def authenticate(rt: Runtime, token: str, source_ip: str | None) -> str:
    return rt.store.call(accounts.authenticate, rt, token, source_ip).principal.id


def events(rt: Runtime, action: str) -> list[Any]:
    with rt.store.engine.connect() as connection:
        return list(connection.execute(select(EventRow).where(EventRow.action == action)))


@pytest.fixture
def pat(runtime: Runtime, initialized: bootstrap.InitResult) -> Person:
    person = make_person(runtime, admin_of(initialized), email="pat.picker@example.test",
                         name="Pat Picker", grants=[Grant(Role.ANALYST, "acme")])
    networks.set_networks(runtime, system_auditor(runtime), admin_of(initialized), person.id,
                          [OFFICE])
    return person


def test_the_right_credentials_from_outside_fail_like_a_wrong_password(
        runtime: Runtime, pat: Person) -> None:
    with pytest.raises(InvalidCredentialsError):
        sign_in(runtime, pat, OUTSIDE)
    refused = events(runtime, "session:create")[-1]
    assert (refused.outcome, refused.reason, refused.target_id) == (
        "denied", "address_not_allowed", pat.id)
    with runtime.store.engine.connect() as connection:
        assert connection.scalar(select(Account.failed_logins)
                                 .where(Account.id == pat.id)) == 1
    authenticate(runtime, sign_in(runtime, pat, INSIDE), INSIDE)


def test_a_session_used_from_outside_is_refused(runtime: Runtime, pat: Person) -> None:
    token = sign_in(runtime, pat, INSIDE)
    for elsewhere in (OUTSIDE, None, "not an address"):
        with pytest.raises(UnauthenticatedError):
            authenticate(runtime, token, elsewhere)
    assert authenticate(runtime, token, f"::ffff:{INSIDE}") == pat.id


def test_an_api_key_used_from_outside_is_refused_and_lifting_the_list_lets_it_in(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    admin = admin_of(initialized)
    service = accounts.create_service(runtime, system_auditor(runtime), admin,
                                      name="label printer", grants=[Grant(Role.INGEST, "acme")])
    networks.set_networks(runtime, system_auditor(runtime), admin, service.id,
                          [OFFICE, "2001:db8::/32"])
    assert authenticate(runtime, service.api_key, "2001:db8::7") == service.id
    with pytest.raises(UnauthenticatedError):
        authenticate(runtime, service.api_key, OUTSIDE)
    networks.set_networks(runtime, system_auditor(runtime), admin, service.id, [])
    assert authenticate(runtime, service.api_key, OUTSIDE) == service.id
    assert [e.count for e in events(runtime, "accounts:networks")] == [2, 0]


@pytest.mark.parametrize("entries", [["10.0.0.1/8"], ["not a network"], ["10.0.0.0/33"],
                                     ["10.0.0.0/8"] * 51])
def test_malformed_or_too_many_networks_are_refused(
        runtime: Runtime, initialized: bootstrap.InitResult, pat: Person,
        entries: list[str]) -> None:
    with pytest.raises(AccountRequestError):
        networks.set_networks(runtime, system_auditor(runtime), admin_of(initialized), pat.id,
                              entries)
    with runtime.store.engine.connect() as connection:
        assert connection.scalar(select(Account.allowed_networks)
                                 .where(Account.id == pat.id)) == OFFICE


def test_nobody_sets_their_own_networks_nor_too_long_ones_nor_an_unknown_accounts(
        runtime: Runtime, initialized: bootstrap.InitResult, pat: Person) -> None:
    """Setting one's own would lift one's own restriction (or lock oneself out); 50 full
    IPv6 addresses written out overflow the column (a 500 on PostgreSQL before)."""
    admin = admin_of(initialized)
    with pytest.raises(AccountRequestError):
        networks.set_networks(runtime, system_auditor(runtime, INSIDE), admin,
                              initialized.admin_id, [OFFICE])
    with pytest.raises(AccountRequestError):
        networks.set_networks(runtime, system_auditor(runtime), admin, pat.id,
                              [f"abcd:abcd:abcd:abcd:abcd:abcd:abcd:ab{n:02x}/128"
                               for n in range(50)])
    with pytest.raises(AccountNotFoundError):
        networks.set_networks(runtime, system_auditor(runtime), admin,
                              "acc_000000000000000000000000", [OFFICE])


def test_admits_compares_addresses_in_one_form() -> None:
    assert networks.admits(None, None)
    assert networks.admits("10.0.0.0/8", "::ffff:10.1.2.3")
    assert not networks.admits("10.0.0.0/8", "11.0.0.1")
    assert not networks.admits("10.0.0.0/8", None)
    assert networks.canonical(["10.0.0.0/8", " 10.0.0.0/8", "::ffff:192.0.2.0/120"]) == \
        "10.0.0.0/8,192.0.2.0/24"
    assert networks.canonical([]) is None
