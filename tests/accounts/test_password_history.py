"""Password history (PARAMETERS.md): a new password is none of the account's last 10.

- The current password and the nine before it are refused (422 ``password_reused``);
  nothing changes, and the credentials, being right, count no failure.
- The password changed eleven times ago is forgotten, and may come back.
- The earlier passwords are kept as their Argon2id hashes only, nine rows at most.
"""

from __future__ import annotations

from itertools import pairwise

import pyotp
import pytest
from sqlalchemy import func, select

from sellervault import bootstrap
from sellervault.access.roles import Grant, Role
from sellervault.accounts import password_age, password_history
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import PasswordReusedError
from sellervault.accounts.models import Account, PasswordHistoryRow
from sellervault.clock import ManualClock
from sellervault.runtime import Runtime
from tests.support import Person, admin_of, make_person, system_auditor

PASSWORDS = [f"my {n}th fresh passphrase ever" for n in range(1, 12)]


@pytest.fixture
def dan(runtime: Runtime, initialized: bootstrap.InitResult) -> Person:
    return make_person(runtime, admin_of(initialized), email="dan.dunn@example.test",
                       name="Dan Dunn", grants=[Grant(Role.ANALYST, "acme")])


def change(rt: Runtime, person: Person, current: str, new: str) -> None:
    """A change a day after the last one, with a fresh code."""
    assert isinstance(rt.clock, ManualClock)
    rt.clock.advance(password_age.MIN_AGE.total_seconds())
    accounts.change_password(rt, system_auditor(rt), email=person.email,
                             current_password=current,
                             totp_code=pyotp.TOTP(person.totp_secret).at(rt.clock.timestamp()),
                             new_password_value=new)


def kept_hashes(rt: Runtime, account_id: str) -> list[str]:
    with rt.store.transaction() as session:
        return list(session.scalars(select(PasswordHistoryRow.password_hash).where(
            PasswordHistoryRow.account_id == account_id)))


# Thirteen password changes, each checked against up to ten Argon2id hashes (20 s a
# database): run on PostgreSQL only; the other tests here run on both.
@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_last_ten_are_refused_and_the_eleventh_back_may_come_back(
        runtime: Runtime, dan: Person) -> None:
    history = [dan.password, *PASSWORDS[:9]]  # ten passwords: the enrolled one, nine changes
    for old, new in pairwise(history):
        change(runtime, dan, old, new)
    current = history[-1]
    with runtime.store.transaction() as session:
        before = session.get_one(Account, dan.id).password_hash
    for reused in (history[0], history[5], current):  # the oldest remembered, one, the current
        with pytest.raises(PasswordReusedError) as refused:
            change(runtime, dan, current, reused)
        assert (refused.value.status, refused.value.code) == (422, "password_reused")
    with runtime.store.transaction() as session:
        row = session.get_one(Account, dan.id)
        assert (row.password_hash, row.failed_logins) == (before, 0)

    change(runtime, dan, current, PASSWORDS[9])  # the enrolled one is now eleventh back
    assert len(kept_hashes(runtime, dan.id)) == 9
    with pytest.raises(PasswordReusedError):
        change(runtime, dan, PASSWORDS[9], history[1])  # tenth back: still remembered
    change(runtime, dan, PASSWORDS[9], dan.password)


def test_earlier_passwords_are_kept_as_argon2id_hashes_only(runtime: Runtime,
                                                            dan: Person) -> None:
    change(runtime, dan, dan.password, PASSWORDS[0])
    [kept] = kept_hashes(runtime, dan.id)
    assert kept.startswith("$argon2id$") and dan.password not in kept
    assert password_history.is_reused([kept], dan.password)
    assert not password_history.is_reused([kept, None], PASSWORDS[0])
    with runtime.store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(PasswordHistoryRow)) == 1
