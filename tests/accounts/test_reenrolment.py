"""Re-enrolment: a person who lost their authenticator gets a new enrolment token from an
administrator, and nothing else changes hands.

- At once: the account cannot sign in (not even with the old password and authenticator),
  its sessions end, its unused recovery codes and earlier enrolment tokens stop working; the
  event ``accounts:reenrol`` names the administrator and the account.
- The person enrols again: a new authenticator, new recovery codes, a password that is none
  of their last ten (the old one is refused).
- Refused, with nothing changed: an administrator's own account (another does it), a
  service, a disabled account (re-enabled first), an unknown id.
"""

from __future__ import annotations

from collections.abc import Callable

import pyotp
import pytest

from sellervault import bootstrap
from sellervault.access.roles import Grant, Principal, Role
from sellervault.accounts import enrolment, reenrolment
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import (
    AccountNotFoundError,
    AccountRequestError,
    AccountStateError,
    InvalidCredentialsError,
    InvalidEnrolmentError,
    PasswordReusedError,
    UnauthenticatedError,
)
from sellervault.accounts.models import Account
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.runtime import Runtime
from tests.support import Person, admin_of, make_person, system_auditor

NEW = "a new start with a new phone"


def admin_auditor(rt: Runtime, admin: Principal) -> Auditor:
    return Auditor(rt.audit, Actor(Channel.API, actor_id=admin.id, source_ip="198.51.100.7"))


@pytest.fixture
def erin(runtime: Runtime, initialized: bootstrap.InitResult) -> Person:
    return make_person(runtime, admin_of(initialized), email="erin.east@example.test",
                       name="Erin East", grants=[Grant(Role.ANALYST, "acme")])


def fresh(rt: Runtime, secret: str) -> str:
    assert isinstance(rt.clock, ManualClock)
    rt.clock.advance(30)
    return pyotp.TOTP(secret).at(rt.clock.timestamp())


def login(rt: Runtime, person: Person, password: str, second: str) -> accounts.IssuedSession:
    return accounts.login(rt, system_auditor(rt), email=person.email, password=password,
                          totp_code=second)


def status(rt: Runtime, account_id: str) -> str:
    with rt.store.transaction() as session:
        return session.get_one(Account, account_id).status


def test_a_person_who_lost_their_authenticator_enrols_again(
        runtime: Runtime, initialized: bootstrap.InitResult, erin: Person) -> None:
    admin = admin_of(initialized)
    live = login(runtime, erin, erin.password, fresh(runtime, erin.totp_secret))
    issued = reenrolment.reenrol(runtime, admin_auditor(runtime, admin), admin, erin.id)
    assert issued.token.startswith("sve_")

    assert status(runtime, erin.id) == "enrolling"
    with pytest.raises(UnauthenticatedError):
        runtime.store.call(accounts.authenticate, runtime, live.token)
    for second in (fresh(runtime, erin.totp_secret), erin.recovery_codes[0]):
        with pytest.raises(InvalidCredentialsError):
            login(runtime, erin, erin.password, second)
    with runtime.store.transaction() as session:
        [event] = session.query(EventRow).filter(EventRow.action == "accounts:reenrol").all()
        assert (event.actor_id, event.target_id, event.outcome) == (admin.id, erin.id,
                                                                   "success")

    secret = enrolment.start(runtime, system_auditor(runtime), issued.token)
    assert secret != erin.totp_secret
    with pytest.raises(PasswordReusedError):  # the old password may not come back
        enrolment.finish(runtime, system_auditor(runtime), issued.token, erin.password,
                         fresh(runtime, secret))
    codes = enrolment.finish(runtime, system_auditor(runtime), issued.token, NEW,
                             fresh(runtime, secret))
    assert len(codes) == 10 and not set(codes) & set(erin.recovery_codes)
    with pytest.raises(InvalidCredentialsError):  # the old authenticator: nothing
        login(runtime, erin, NEW, fresh(runtime, erin.totp_secret))
    assert login(runtime, erin, NEW, fresh(runtime, secret)).account_id == erin.id
    assert login(runtime, erin, NEW, codes[0]).account_id == erin.id


def test_a_new_token_ends_the_one_before(runtime: Runtime,
                                         initialized: bootstrap.InitResult) -> None:
    admin = admin_of(initialized)
    created = accounts.create_person(runtime, system_auditor(runtime), admin,
                                     email="fay.first@example.test", name="Fay First",
                                     grants=[Grant(Role.ANALYST, "acme")])
    again = reenrolment.reenrol(runtime, admin_auditor(runtime, admin), admin, created.id)
    with pytest.raises(InvalidEnrolmentError):
        enrolment.start(runtime, system_auditor(runtime), created.enrolment_token)
    assert enrolment.start(runtime, system_auditor(runtime), again.token)


@pytest.mark.parametrize("target, error", [
    (lambda admin, service, person: admin.id, AccountRequestError),
    (lambda admin, service, person: service, AccountStateError),
    (lambda admin, service, person: person, AccountStateError),  # disabled
    (lambda admin, service, person: "acc_" + "0" * 24, AccountNotFoundError),
])
def test_refusals_change_nothing(runtime: Runtime, initialized: bootstrap.InitResult,
                                 erin: Person, target: Callable[..., str],
                                 error: type[Exception]) -> None:
    admin = admin_of(initialized)
    service = accounts.create_service(runtime, system_auditor(runtime), admin,
                                      name="acme reports", grants=[Grant(Role.ANALYST, "acme")])
    with runtime.store.transaction() as session:
        session.get_one(Account, erin.id).status = "disabled"
    account_id = target(admin, service.id, erin.id)
    with pytest.raises(error):
        reenrolment.reenrol(runtime, admin_auditor(runtime, admin), admin, account_id)
    assert status(runtime, erin.id) == "disabled"
    assert status(runtime, initialized.admin_id) == "active"
    with runtime.store.transaction() as session:
        assert session.query(EventRow).filter(EventRow.action == "accounts:reenrol").count() == 0
