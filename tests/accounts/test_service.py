"""Accounts: the first administrator, people and services, login, bearer tokens.

- ``init`` makes exactly one account, the first administrator; there are no default or
  shared identities (generic names like "admin" or "Test" are refused).
- A person logs in with password AND a TOTP code (RFC 6238, +-1 step); each code is accepted
  once. Wrong password, wrong code and unknown email are one indistinct error; every failure
  is committed (event and counter) even though the call raises.
- A person created by an administrator gets nothing but an enrolment token
  (``accounts.enrolment``); changing a password (at most once a day: ``password_age``)
  ends every open session.
- A bearer token is a session (idle 15 min, absolute 8 h) or a service API key (expires
  within 365 days); revoked, expired, forged or mangled tokens are refused.
- The rows of sessions that ended (expired, idle, revoked) more than a day ago are purged, by
  the runtime's clock; every other session stays, and a live one still authenticates.
- The database holds no credential in clear: tokens and keys as keyed hashes, passwords as
  Argon2id hashes, TOTP secrets encrypted and bound to their account.
- One account per mailbox: an email that looks like an existing one (a Cyrillic letter,
  fullwidth forms, an accent, a +tag) is a conflict, also when two creations race; generic
  names are refused however spelled, for people, services and the first administrator; and a
  lookalike email never logs into the account it imitates.

"Attacker" below means someone who can read or write the database but holds no key.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pyotp
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.sql import ColumnElement

from sellervault import bootstrap
from sellervault.access.actions import Action
from sellervault.access.roles import Grant, Principal, Role
from sellervault.accounts import lockout, password_age
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import (
    AccountConflictError,
    AccountRequestError,
    AlreadyInitializedError,
    InvalidCredentialsError,
    PasswordPolicyError,
    PasswordReusedError,
    UnauthenticatedError,
)
from sellervault.accounts.models import Account, ApiKey, GrantRow, SessionRow
from sellervault.audit import verification
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel, Outcome
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.config import Settings
from sellervault.crypto.credentials import keyed_hash
from sellervault.runtime import Runtime
from sellervault.store.base import Base
from tests.support import (
    ADMIN_EMAIL,
    ADMIN_NAME,
    ADMIN_PASSWORD,
    NEW_PASSWORD,
    Person,
    make_person,
)

BOB_EMAIL = "bob.builder@example.test"
BOB_NAME = "Bob Builder"
BOB_GRANTS = [Grant(Role.ANALYST, "acme"), Grant(Role.PII_READER, "acme")]
CYRILLIC_A = "\N{CYRILLIC SMALL LETTER A}"
CYRILLIC_CAPITAL_A = "\N{CYRILLIC SMALL LETTER A}".upper()
CYRILLIC_ER = "\N{CYRILLIC SMALL LETTER ER}"  # looks like p
CYRILLIC_O = "\N{CYRILLIC SMALL LETTER O}"
CYRILLIC_IE = "\N{CYRILLIC SMALL LETTER IE}"  # looks like e
DOTTED_CAPITAL_I = "\N{LATIN CAPITAL LETTER I WITH DOT ABOVE}"


# -- helpers ---------------------------------------------------------------------------------

def auditor(rt: Runtime) -> Auditor:
    return Auditor(rt.audit, Actor(Channel.API, source_ip="198.51.100.7"))


def authenticate(rt: Runtime, token: str, source_ip: str | None = None) -> Principal:
    """``accounts.authenticate``, run to its end from this (blocking) test."""
    return rt.store.call(accounts.authenticate, rt, token, source_ip).principal



def current_step(rt: Runtime) -> int:
    """The TOTP step of the runtime's clock (a ``ManualClock`` in tests)."""
    return int(rt.clock.timestamp()) // 30


def code(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).at(step * 30)


def wrong_code(secret: str, step: int) -> str:
    """A well-formed code that is valid for no step near ``step`` (so never accepted)."""
    near = {code(secret, near_step) for near_step in range(step - 3, step + 4)}
    return next(candidate for candidate in (code(secret, step + offset)
                                            for offset in range(10, 40))
                if candidate not in near)


def admin_principal(initialized: bootstrap.InitResult) -> Principal:
    return Principal(initialized.admin_id, "person", (Grant(Role.ADMIN, "*"),))


def login_admin(rt: Runtime, initialized: bootstrap.InitResult,
                step: int) -> accounts.IssuedSession:
    return accounts.login(rt, auditor(rt), email=ADMIN_EMAIL, password=ADMIN_PASSWORD,
                          totp_code=code(initialized.totp_secret, step))


def table(rt: Runtime, model: type[Base], *where: ColumnElement[bool]) -> list[dict[str, Any]]:
    with rt.store.engine.connect() as connection:
        return [dict(row._mapping)
                for row in connection.execute(select(model.__table__).where(*where))]


def account(rt: Runtime, account_id: str) -> dict[str, Any]:
    [row] = table(rt, Account, Account.id == account_id)
    return row


def events(rt: Runtime, action: str) -> list[dict[str, Any]]:
    return sorted(table(rt, EventRow, EventRow.action == action), key=lambda row: row["seq"])


def tamper(rt: Runtime, model: type[Base], where: ColumnElement[bool], **values: Any) -> None:
    """The attacker's (or the clock's) side: a write straight into the database."""
    with rt.store.engine.begin() as connection:
        connection.execute(update(model).where(where).values(**values))


def every_value(rt: Runtime) -> list[tuple[str, str, bytes]]:
    """(table, column, value as bytes) for every cell of every table."""
    cells = []
    with rt.store.engine.connect() as connection:
        for db_table in Base.metadata.sorted_tables:
            for row in connection.execute(select(db_table)):
                for column, value in row._mapping.items():
                    raw = bytes(value) if isinstance(value, (bytes, memoryview)) else (
                        str(value).encode())
                    cells.append((db_table.name, column, raw))
    return cells


def assert_nowhere_in_database(rt: Runtime, *needles: bytes) -> None:
    cells = every_value(rt)
    assert len(cells) > 50  # the scan really saw the accounts, keys and events
    for table_name, column, raw in cells:
        for needle in needles:
            assert needle not in raw, (table_name, column)


def fullwidth(text: str) -> str:
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


@pytest.fixture
def bob(runtime: Runtime, initialized: bootstrap.InitResult) -> Person:
    """A person created by the administrator who has enrolled: an analyst and PII reader on
    tenant acme."""
    return make_person(runtime, admin_principal(initialized), email=BOB_EMAIL, name=BOB_NAME,
                       grants=BOB_GRANTS)


# -- the first administrator -----------------------------------------------------------------

def test_init_makes_exactly_one_account_the_first_administrator(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    [admin] = table(runtime, Account)
    assert admin["id"] == initialized.admin_id
    assert (admin["kind"], admin["email"], admin["name"], admin["status"]) == (
        "person", ADMIN_EMAIL, ADMIN_NAME, "active")
    assert admin["must_change_password"] is False
    assert admin["created_by"] is None
    assert [(row["role"], row["tenant"]) for row in table(runtime, GrantRow)] == [("admin", "*")]


def test_the_first_administrator_gets_ten_recovery_codes_each_usable_once(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    codes = initialized.recovery_codes
    assert len(codes) == 10 and len(set(codes)) == 10
    assert_nowhere_in_database(runtime, *(c.encode() for c in codes))
    issued = accounts.login(runtime, auditor(runtime), email=ADMIN_EMAIL,
                            password=ADMIN_PASSWORD, totp_code=codes[3])
    assert issued.account_id == initialized.admin_id
    with pytest.raises(InvalidCredentialsError):
        accounts.login(runtime, auditor(runtime), email=ADMIN_EMAIL, password=ADMIN_PASSWORD,
                       totp_code=codes[3])


def test_first_administrator_is_created_only_once(runtime: Runtime) -> None:
    events_before = len(table(runtime, EventRow))
    with pytest.raises(AlreadyInitializedError):
        accounts.create_first_admin(runtime, auditor(runtime), email="eve.evans@example.test",
                                    name="Eve Evans", password="another long passphrase")
    assert len(table(runtime, Account)) == 1
    assert len(table(runtime, EventRow)) == events_before


@pytest.mark.parametrize("name", ["admin", "Test", " ROOT ", "Administrator", "shared", "",
                                  "   ", "Demo"])
def test_generic_or_empty_names_are_refused(name: str) -> None:
    with pytest.raises(AccountRequestError):
        accounts.check_new_person(email="carol.chen@example.test", name=name,
                                  password="correct horse battery staple", min_length=12)


@pytest.mark.parametrize("email", ["admin@example.test", "Root@example.test",
                                   "test@example.test", "no-at-sign.example.test",
                                   "@example.test", "carol.chen@", "", "@"])
def test_generic_or_malformed_emails_are_refused(email: str) -> None:
    with pytest.raises(AccountRequestError):
        accounts.check_new_person(email=email, name="Carol Chen",
                                  password="correct horse battery staple", min_length=12)


def test_generic_accounts_are_refused_and_nothing_is_written(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    admin = admin_principal(initialized)
    with pytest.raises(AccountRequestError):
        accounts.create_person(runtime, auditor(runtime), admin, email="test@example.test",
                               name="Test", grants=[])
    with pytest.raises(AccountRequestError):
        accounts.create_service(runtime, auditor(runtime), admin, name="service", grants=[])
    with pytest.raises(AccountConflictError):
        accounts.create_person(runtime, auditor(runtime), admin, email=ADMIN_EMAIL.upper(),
                               name="Alice Again", grants=[])
    assert len(table(runtime, Account)) == 1
    assert len(events(runtime, "accounts:create")) == 1  # init's own

# -- lookalike identities --------------------------------------------------------------------

BOB_LOOKALIKES = [
    f"b{CYRILLIC_O}b.builder@example.test",  # a Cyrillic o
    f"bob.builder@ex{CYRILLIC_A}mple.test",  # in the domain
    fullwidth("BOB.BUILDER") + "@example.test",
    "bob.builder+orders@example.test",  # a +tag is the same mailbox
    "B\N{LATIN CAPITAL LETTER O WITH ACUTE}B.BUILDER@example.test",
]


@pytest.mark.parametrize("email", BOB_LOOKALIKES)
def test_lookalike_emails_of_a_person_are_refused_and_nothing_is_written(
        runtime: Runtime, initialized: bootstrap.InitResult, bob: Person,
        email: str) -> None:
    """Someone who makes "bob.builder@" with a Cyrillic o gets a second account that an
    administrator reading a list cannot tell from Bob's: refused as the same mailbox."""
    with pytest.raises(AccountConflictError) as refused:
        accounts.create_person(runtime, auditor(runtime), admin_principal(initialized),
                               email=email, name="Robert Builder", grants=BOB_GRANTS)
    assert email.strip() not in str(refused.value)
    assert {row["id"] for row in table(runtime, Account)} == {initialized.admin_id, bob.id}
    assert {row["account_id"] for row in table(runtime, GrantRow)} == {initialized.admin_id,
                                                                       bob.id}
    assert [e["target_id"] for e in events(runtime, "accounts:create")] == [
        initialized.admin_id, bob.id]


def test_people_are_stored_with_a_normalised_email_and_their_mailbox_key(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    from sellervault.accounts.identity import mailbox

    admin = admin_principal(initialized)
    made = accounts.create_person(runtime, auditor(runtime), admin,
                                  email=fullwidth("Pat.Picker+Orders@Example.TEST"),
                                  name="Pat Picker", grants=[])
    service = accounts.create_service(runtime, auditor(runtime), admin, name="Warehouse Sync",
                                      grants=[])
    row = account(runtime, made.id)
    assert row["email"] == "pat.picker+orders@example.test"  # the tag is kept
    pat = mailbox("pat.picker@example.test")
    assert pat is not None and row["mailbox_key"] == pat.key  # the key has none
    assert account(runtime, service.id)["mailbox_key"] is None
    admin_mailbox = mailbox(ADMIN_EMAIL)
    assert admin_mailbox is not None
    assert account(runtime, initialized.admin_id)["mailbox_key"] == admin_mailbox.key


@pytest.mark.parametrize("email,name", [
    (f"{CYRILLIC_A}dmin@example.test", "Carol Chen"),
    (f"ADM{DOTTED_CAPITAL_I}N@example.test", "Carol Chen"),
    (fullwidth("admin") + "@example.test", "Carol Chen"),
    ("admin+carol@example.test", "Carol Chen"),
    (f"supp{CYRILLIC_O}rt+eu@example.test", "Carol Chen"),
    ("carol.chen@example.test", f"{CYRILLIC_CAPITAL_A}dmin"),
    ("carol.chen@example.test", f"T{CYRILLIC_IE}st"),
    ("carol.chen@example.test", fullwidth("ROOT")),
    ("carol.chen@example.test", "ADM1N"),
    ("carol.chen@example.test", "\N{ZERO WIDTH SPACE}"),
])
def test_generic_lookalike_people_are_refused_and_nothing_is_written(
        runtime: Runtime, initialized: bootstrap.InitResult, email: str, name: str) -> None:
    with pytest.raises(AccountRequestError) as refused:
        accounts.create_person(runtime, auditor(runtime), admin_principal(initialized),
                               email=email, name=name, grants=[])
    assert email not in str(refused.value) and name not in str(refused.value)
    assert len(table(runtime, Account)) == 1
    assert len(events(runtime, "accounts:create")) == 1  # init's own


@pytest.mark.parametrize("name", [f"{CYRILLIC_CAPITAL_A}dmin", f"{CYRILLIC_A}dmin",
                                  fullwidth("Service"), f"SYST{CYRILLIC_IE.upper()}M",
                                  "ADMlN", f"ADM{DOTTED_CAPITAL_I}N"])
def test_generic_lookalike_services_are_refused_and_nothing_is_written(
        runtime: Runtime, initialized: bootstrap.InitResult, name: str) -> None:
    with pytest.raises(AccountRequestError):
        accounts.create_service(runtime, auditor(runtime), admin_principal(initialized),
                                name=name, grants=[Grant(Role.INGEST, "acme")])
    assert len(table(runtime, Account)) == 1
    assert table(runtime, ApiKey) == []
    assert len(events(runtime, "accounts:create")) == 1


def test_a_lookalike_email_cannot_log_in_to_the_real_account(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    """Login compares the normalised email exactly, never the skeleton: the right password
    and a valid code with "alice.admin@" spelled with a Cyrillic a is an unknown email."""
    step = current_step(runtime)
    good = code(initialized.totp_secret, step)
    for lookalike in (f"alice.{CYRILLIC_A}dmin@example.test",
                      f"alice.admin@ex{CYRILLIC_A}mple.test",
                      "alice.admin+x@example.test"):
        with pytest.raises(InvalidCredentialsError):
            accounts.login(runtime, auditor(runtime), email=lookalike,
                           password=ADMIN_PASSWORD, totp_code=good)
    assert table(runtime, SessionRow) == []
    assert account(runtime, initialized.admin_id)["failed_logins"] == 0
    assert {e["target_id"] for e in events(runtime, "session:create")} == {None}
    login_admin(runtime, initialized, step)  # the code is still unspent


def test_login_looks_up_the_normalised_email(runtime: Runtime,
                                            initialized: bootstrap.InitResult) -> None:
    """The administrator typing their address in fullwidth forms (an input method's
    default) reaches their own account: it is the same text after NFKC."""
    issued = accounts.login(runtime, auditor(runtime), email=fullwidth(ADMIN_EMAIL.upper()),
                            password=ADMIN_PASSWORD,
                            totp_code=code(initialized.totp_secret, current_step(runtime)))
    assert issued.account_id == initialized.admin_id


@pytest.mark.parametrize("email,name", [
    (f"{CYRILLIC_A}dmin@example.test", "Alice Admin"),
    ("admin+alice@example.test", "Alice Admin"),
    (fullwidth("root") + "@example.test", "Alice Admin"),
    (ADMIN_EMAIL, f"{CYRILLIC_CAPITAL_A}dmin"),
    (ADMIN_EMAIL, f"ADM{DOTTED_CAPITAL_I}N"),
])
def test_the_first_administrator_goes_through_the_same_rules(settings: Settings, email: str,
                                                             name: str) -> None:
    with pytest.raises(AccountRequestError):
        bootstrap.init(settings, admin_email=email, admin_name=name,
                       admin_password=ADMIN_PASSWORD)
    assert not bootstrap.is_initialized(settings)  # nothing made: init can run again
    bootstrap.init(settings, admin_email=ADMIN_EMAIL, admin_name=ADMIN_NAME,
                   admin_password=ADMIN_PASSWORD)


def test_the_first_administrators_email_is_stored_normalised(settings: Settings) -> None:
    made = bootstrap.init(settings, admin_email=f" {fullwidth('Alice.Admin')}@Example.TEST ",
                          admin_name=ADMIN_NAME, admin_password=ADMIN_PASSWORD)
    rt = bootstrap.open_runtime(settings)
    try:
        assert account(rt, made.admin_id)["email"] == ADMIN_EMAIL
        login_admin(rt, made, current_step(rt))
    finally:
        rt.close()


class HeldAuditor(Auditor):
    """Holds a creation's transaction open at its event, after the account row is written
    and before the commit: the moment a second creation can slip past the check."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt.audit, Actor(Channel.API, source_ip="198.51.100.8"))
        self.holding = threading.Event()
        self.release = threading.Event()

    def record(self, db: Any, action: str, outcome: Outcome, **fields: Any) -> int:
        if action == Action.ACCOUNTS_CREATE:
            self.holding.set()
            assert self.release.wait(30)
        return super().record(db, action, outcome, **fields)


def _wait_until_blocked_on_a_lock(rt: Runtime) -> None:
    """PostgreSQL: until a session of this database waits for a lock (the second INSERT,
    on the first one's uncommitted key). SQLite: writers queue before they read, so the
    second creation waits for the first to commit whatever the timing."""
    if rt.store.dialect == "sqlite":
        time.sleep(0.3)
        return
    deadline = time.monotonic() + 20
    with rt.store.engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'")).scalar()
            connection.rollback()
            if waiting:
                return
            time.sleep(0.02)
    pytest.fail("the second creation never waited for the first one's row")


def test_a_racing_creation_of_the_same_mailbox_is_a_conflict_and_writes_nothing(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    """Two administrators create Pat at once, one with a Cyrillic p and a. The second passes
    the check before the first commits; the unique mailbox key stops its INSERT, and that
    becomes the same conflict, with its transaction rolled back (no row, grant or event)."""
    admin = admin_principal(initialized)
    held = HeldAuditor(runtime)
    outcomes: dict[str, object] = {}

    def create(label: str, who: Auditor, email: str) -> None:
        try:
            outcomes[label] = accounts.create_person(runtime, who, admin, email=email,
                                                     name="Pat Picker", grants=BOB_GRANTS)
        except Exception as exc:
            outcomes[label] = exc

    first = threading.Thread(target=create, args=("first", held, "pat.picker@example.test"))
    second = threading.Thread(target=create, args=(
        "second", auditor(runtime), f"{CYRILLIC_ER}{CYRILLIC_A}t.picker@example.test"))
    first.start()
    try:
        assert held.holding.wait(30)
        second.start()
        _wait_until_blocked_on_a_lock(runtime)
    finally:
        held.release.set()
        first.join(30)
        second.join(30)
    assert isinstance(outcomes["first"], accounts.NewPerson)  # (an enrolment token)
    assert isinstance(outcomes["second"], AccountConflictError), outcomes["second"]
    people = table(runtime, Account, Account.kind == "person")
    assert sorted(row["id"] for row in people) == sorted([initialized.admin_id,
                                                          outcomes["first"].id])
    assert len(table(runtime, GrantRow)) == 1 + len(BOB_GRANTS)
    assert [e["target_id"] for e in events(runtime, "accounts:create")] == [
        initialized.admin_id, outcomes["first"].id]
    assert verification.verify(runtime.store, runtime.keyring).ok  # the rollback left no gap


# -- people created by an administrator ------------------------------------------------------

def test_a_created_person_has_no_secret_anyone_else_knows(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    """The administrator gets an enrolment token and nothing else: no password, no TOTP
    secret; until the person enrols, the account cannot sign in."""
    made = accounts.create_person(runtime, auditor(runtime), admin_principal(initialized),
                                  email=BOB_EMAIL, name=BOB_NAME, grants=BOB_GRANTS)
    assert made.id.startswith("acc_") and made.enrolment_token.startswith("sve_")
    assert not hasattr(made, "one_time_password") and not hasattr(made, "totp_secret")
    row = account(runtime, made.id)
    assert (row["status"], row["password_hash"], row["totp_secret_ct"]) == (
        "enrolling", None, None)
    assert {(g["role"], g["tenant"]) for g in table(runtime, GrantRow,
                                                    GrantRow.account_id == made.id)} == {
        (g.role.value, g.tenant) for g in BOB_GRANTS}
    [created] = [e for e in events(runtime, "accounts:create") if e["target_id"] == made.id]
    assert created["count"] == len(BOB_GRANTS)
    with pytest.raises(InvalidCredentialsError):
        accounts.login(runtime, auditor(runtime), email=BOB_EMAIL, password="",
                       totp_code="000000")


def test_change_password_then_log_in(runtime: Runtime, bob: Person,
                                     clock: ManualClock) -> None:
    clock.advance(password_age.MIN_AGE.total_seconds())
    before = account(runtime, bob.id)
    step = current_step(runtime)
    accounts.change_password(runtime, auditor(runtime), email=BOB_EMAIL,
                             current_password=bob.password, totp_code=code(bob.totp_secret, step),
                             new_password_value="a fresh passphrase of my own")
    after = account(runtime, bob.id)
    assert after["password_hash"] != before["password_hash"]
    [changed] = events(runtime, "password:change")
    assert (changed["outcome"], changed["target_id"]) == ("success", bob.id)
    with pytest.raises(InvalidCredentialsError):
        accounts.login(runtime, auditor(runtime), email=BOB_EMAIL, password=bob.password,
                       totp_code=code(bob.totp_secret, step + 1))
    principal = authenticate(runtime, accounts.login(
        runtime, auditor(runtime), email=BOB_EMAIL, password="a fresh passphrase of my own",
        totp_code=code(bob.totp_secret, step + 1)).token)
    assert (principal.id, principal.kind) == (bob.id, "person")


def test_change_password_ends_every_open_session(
        runtime: Runtime, initialized: bootstrap.InitResult, clock: ManualClock) -> None:
    clock.advance(password_age.MIN_AGE.total_seconds())
    step = current_step(runtime)
    issued = login_admin(runtime, initialized, step)
    assert authenticate(runtime, issued.token).id == initialized.admin_id
    accounts.change_password(runtime, auditor(runtime), email=ADMIN_EMAIL,
                             current_password=ADMIN_PASSWORD,
                             totp_code=code(initialized.totp_secret, step + 1),
                             new_password_value=NEW_PASSWORD)
    with pytest.raises(UnauthenticatedError):
        authenticate(runtime, issued.token)
    [session_row] = table(runtime, SessionRow)
    assert session_row["revoked_at"] is not None


def test_change_password_refuses_a_bad_new_password_and_changes_nothing(
        runtime: Runtime, initialized: bootstrap.InitResult, clock: ManualClock) -> None:
    clock.advance(password_age.MIN_AGE.total_seconds())
    step = current_step(runtime)
    before = account(runtime, initialized.admin_id)
    for new_password, error in [
        (ADMIN_PASSWORD, PasswordReusedError),  # the same password again
        ("qwerty123456!", PasswordPolicyError),  # a common one
        ("short pass", PasswordPolicyError),
        ("alice loves long passphrases", PasswordPolicyError),  # contains the name
        ("x" * 129, PasswordPolicyError),
    ]:
        with pytest.raises(error):
            accounts.change_password(runtime, auditor(runtime), email=ADMIN_EMAIL,
                                     current_password=ADMIN_PASSWORD,
                                     totp_code=code(initialized.totp_secret, step),
                                     new_password_value=new_password)
        assert account(runtime, initialized.admin_id) == before  # hash, TOTP step, all of it
    login_admin(runtime, initialized, step)  # the code was not spent by the refusals


def test_change_password_with_wrong_credentials_is_a_counted_failure(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    step = current_step(runtime)
    before = account(runtime, initialized.admin_id)
    for current, totp in [("not the password at all", code(initialized.totp_secret, step)),
                          (ADMIN_PASSWORD, wrong_code(initialized.totp_secret, step))]:
        with pytest.raises(InvalidCredentialsError):
            accounts.change_password(runtime, auditor(runtime), email=ADMIN_EMAIL,
                                     current_password=current, totp_code=totp,
                                     new_password_value=NEW_PASSWORD)
    after = account(runtime, initialized.admin_id)
    assert after["password_hash"] == before["password_hash"]
    assert after["failed_logins"] == 2
    assert [(e["outcome"], e["status"], e["reason"]) for e in events(runtime, "password:change")
            ] == [("denied", 401, "invalid_credentials")] * 2


def test_a_made_up_recovery_code_proves_nothing_and_clears_no_failures(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    """The password alone, with a code shaped like a recovery code but none of the
    account's: it used to pass for the second factor until its claim, so a password change
    refused for its new password (too recent, too short) answered 409 or 422, confirming the
    password, and cleared the lockout's counts, letting TOTP codes be guessed without end.
    It is a counted failure like any wrong code, answered 401."""
    step = current_step(runtime)
    for _ in range(3):
        with pytest.raises(InvalidCredentialsError):
            login_admin_with(runtime, wrong_code(initialized.totp_secret, step))
    for new_password in ("x", NEW_PASSWORD):  # refused for its rules, or for its age
        with pytest.raises(InvalidCredentialsError):
            accounts.change_password(runtime, auditor(runtime), email=ADMIN_EMAIL,
                                     current_password=ADMIN_PASSWORD,
                                     totp_code="AAAA-AAAA-AAAA-AAAA",
                                     new_password_value=new_password)
    after = account(runtime, initialized.admin_id)
    assert after["failed_logins"] == 5 and after["failures_since_success"] == 5
    assert [e["status"] for e in events(runtime, "password:change")] == [401, 401]


def login_admin_with(rt: Runtime, totp_code: str) -> accounts.IssuedSession:
    return accounts.login(rt, auditor(rt), email=ADMIN_EMAIL, password=ADMIN_PASSWORD,
                          totp_code=totp_code)


# -- login -----------------------------------------------------------------------------------

def test_login_with_password_and_totp_issues_a_session(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    tamper(runtime, Account, Account.id == initialized.admin_id, failed_logins=3)
    step = current_step(runtime)
    issued = accounts.login(runtime, auditor(runtime), email=f"  {ADMIN_EMAIL.upper()} ",
                            password=ADMIN_PASSWORD,
                            totp_code=code(initialized.totp_secret, step))
    assert issued.account_id == initialized.admin_id
    assert issued.token.startswith("svs_") and len(issued.token) > 40
    assert issued.expires_at == runtime.clock.now() + timedelta(hours=8)
    row = account(runtime, initialized.admin_id)
    assert (row["failed_logins"], row["totp_last_step"]) == (0, step)
    assert row["last_used_at"] is not None
    [session_row] = table(runtime, SessionRow)
    assert session_row["account_id"] == initialized.admin_id
    [logged_in] = events(runtime, "session:create")
    assert (logged_in["outcome"], logged_in["target_id"]) == ("success", initialized.admin_id)
    assert authenticate(runtime, issued.token) == admin_principal(initialized)


def test_wrong_password_wrong_totp_and_unknown_email_are_one_error(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    """Every failure looks the same to the caller, and each one is committed (event and
    counter) although the call raises."""
    secret = initialized.totp_secret
    step = current_step(runtime)
    good = code(secret, step)
    on_admin = [
        (ADMIN_PASSWORD + "!", good),  # wrong password, right code
        ("", good),
        (ADMIN_PASSWORD, wrong_code(secret, step)),  # right password, wrong code
        (ADMIN_PASSWORD, code(secret, step + 3)),  # a code from the future window
        (ADMIN_PASSWORD, code(secret, step - 3)),  # an old code
        (ADMIN_PASSWORD, good[:5]),
        (ADMIN_PASSWORD, good + "0"),
        (ADMIN_PASSWORD, f" {good}"),
        (ADMIN_PASSWORD, "abcdef"),
        (ADMIN_PASSWORD, ""),
    ]
    unknown = [
        ("nobody.here@example.test", ADMIN_PASSWORD, good),
        ("nobody.here@example.test", "sellervault-timing-equaliser-not-a-password", good),
    ]
    errors = []
    for email, password, totp in [(ADMIN_EMAIL, p, t) for p, t in on_admin] + unknown:
        with pytest.raises(InvalidCredentialsError) as caught:
            accounts.login(runtime, auditor(runtime), email=email, password=password,
                           totp_code=totp)
        errors.append((type(caught.value), str(caught.value), caught.value.code,
                       caught.value.status))
        if len(errors) % 4 == 1:  # each one checked, not refused by the lockout after five
            with runtime.store.transaction() as session:
                lockout.succeeded(session, initialized.admin_id)
    assert set(errors) == {(InvalidCredentialsError, "invalid credentials",
                            "invalid_credentials", 401)}

    assert 1 <= account(runtime, initialized.admin_id)["failed_logins"] < lockout.LOCK_AFTER
    denied = events(runtime, "session:create")
    assert len(denied) == len(on_admin) + len(unknown)
    assert {(e["outcome"], e["status"], e["reason"]) for e in denied} == {
        ("denied", 401, "invalid_credentials")}
    assert [e["target_id"] for e in denied] == (
        [initialized.admin_id] * len(on_admin) + [None] * len(unknown))
    assert table(runtime, SessionRow) == []

    login_admin(runtime, initialized, step)  # failures spent no code; success resets
    assert account(runtime, initialized.admin_id)["failed_logins"] == 0


def test_totp_code_cannot_be_replayed(runtime: Runtime,
                                      initialized: bootstrap.InitResult) -> None:
    step = current_step(runtime)
    login_admin(runtime, initialized, step)
    for replayed in (step, step - 1):  # the same code, or any older one
        with pytest.raises(InvalidCredentialsError):
            login_admin(runtime, initialized, replayed)
    login_admin(runtime, initialized, step + 1)  # the next step is still fresh
    with pytest.raises(InvalidCredentialsError):
        login_admin(runtime, initialized, step + 1)
    with pytest.raises(InvalidCredentialsError):  # nor can a spent code change the password
        accounts.change_password(runtime, auditor(runtime), email=ADMIN_EMAIL,
                                 current_password=ADMIN_PASSWORD,
                                 totp_code=code(initialized.totp_secret, step + 1),
                                 new_password_value=NEW_PASSWORD)
    assert len(table(runtime, SessionRow)) == 2
    assert account(runtime, initialized.admin_id)["failed_logins"] == 2
    assert [e["outcome"] for e in events(runtime, "session:create")] == [
        "success", "denied", "denied", "success", "denied"]


def test_disabled_account_can_neither_log_in_nor_use_its_tokens(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    step = current_step(runtime)
    issued = login_admin(runtime, initialized, step)
    tamper(runtime, Account, Account.id == initialized.admin_id, status="disabled")
    with pytest.raises(UnauthenticatedError):
        authenticate(runtime, issued.token)
    with pytest.raises(InvalidCredentialsError):
        login_admin(runtime, initialized, step + 1)


def test_totp_secret_is_bound_to_its_account(runtime: Runtime,
                                             initialized: bootstrap.InitResult,
                                             bob: Person) -> None:
    """An attacker who controls Bob's account and can write the database copies Bob's
    password hash and encrypted TOTP secret onto the administrator's row: the secret is
    bound to Bob's account id, so it does not open as the administrator's: the login fails
    as any failed login does, and the failure is recorded."""
    bobs = account(runtime, bob.id)
    tamper(runtime, Account, Account.id == initialized.admin_id,
           password_hash=bobs["password_hash"], totp_secret_ct=bobs["totp_secret_ct"])
    with pytest.raises(InvalidCredentialsError):
        accounts.login(runtime, auditor(runtime), email=ADMIN_EMAIL,
                       password=bob.password,
                       totp_code=code(bob.totp_secret, current_step(runtime)))
    assert table(runtime, SessionRow) == []
    assert events(runtime, "session:create")[-1]["outcome"] == "denied"


# -- bearer tokens ---------------------------------------------------------------------------

def test_forged_and_mangled_tokens_are_refused(runtime: Runtime,
                                               initialized: bootstrap.InitResult) -> None:
    token = login_admin(runtime, initialized, current_step(runtime)).token
    api_key = accounts.create_service(runtime, auditor(runtime), admin_principal(initialized),
                                      name="Seller Central Ingest",
                                      grants=[Grant(Role.INGEST, "acme")]).api_key
    [stored] = table(runtime, SessionRow)
    forged = [
        "", "svs_", "svk_", "svs_" + secrets.token_urlsafe(32), "svk_" + secrets.token_urlsafe(32),
        "Bearer " + token, token + "x", token[:-1], token.swapcase(), f" {token}",
        "svk_" + token[4:],  # a session token presented as an API key
        "svs_" + api_key[4:],  # an API key presented as a session token
        token[4:], api_key[4:],  # without their prefix
        "svs_" + stored["token_hash"].hex(),  # the stored hash, read from the database
        stored["token_hash"].hex(),
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.",  # an unsigned JWT
    ]
    for candidate in forged:
        with pytest.raises(UnauthenticatedError):
            authenticate(runtime, candidate)
    assert authenticate(runtime, token).id == initialized.admin_id
    assert authenticate(runtime, api_key).kind == "service"


def test_revoked_session_is_refused(runtime: Runtime,
                                    initialized: bootstrap.InitResult) -> None:
    token = login_admin(runtime, initialized, current_step(runtime)).token
    tamper(runtime, SessionRow, SessionRow.account_id == initialized.admin_id,
           revoked_at=runtime.clock.now())
    with pytest.raises(UnauthenticatedError):
        authenticate(runtime, token)


def test_session_idle_timeout_is_15_minutes(runtime: Runtime, initialized: bootstrap.InitResult,
                                            clock: ManualClock) -> None:
    assert runtime.settings.session_idle_minutes == 15
    step = current_step(runtime)
    idle = login_admin(runtime, initialized, step).token
    active = login_admin(runtime, initialized, step + 1).token
    clock.advance(timedelta(minutes=14))
    assert authenticate(runtime, active).id == initialized.admin_id  # use restarts its clock
    [seen] = table(runtime, SessionRow, SessionRow.token_hash == _token_hash(runtime, active))
    assert seen["last_seen_at"] == clock.now()
    clock.advance(timedelta(minutes=1, seconds=1))  # idle: 15:01 unused; active: 1:01
    with pytest.raises(UnauthenticatedError):
        authenticate(runtime, idle)
    assert authenticate(runtime, active).id == initialized.admin_id


def test_session_absolute_timeout_is_8_hours(runtime: Runtime, initialized: bootstrap.InitResult,
                                             clock: ManualClock) -> None:
    token = login_admin(runtime, initialized, current_step(runtime)).token
    [row] = table(runtime, SessionRow)
    assert row["expires_at"] - row["created_at"] == timedelta(hours=8)
    where = SessionRow.token_hash == row["token_hash"]

    clock.advance(timedelta(minutes=1))
    authenticate(runtime, token)  # activity does not extend the absolute limit
    [used] = table(runtime, SessionRow, where)
    assert used["expires_at"] == row["expires_at"]
    assert used["last_seen_at"] > row["last_seen_at"]

    while clock.now() + timedelta(minutes=14) < row["expires_at"]:  # in use all day long
        clock.advance(timedelta(minutes=14))
        authenticate(runtime, token)
    clock.set(row["expires_at"])  # active, but 8 hours old
    with pytest.raises(UnauthenticatedError):
        authenticate(runtime, token)


def test_purge_deletes_exactly_the_sessions_that_ended_over_a_day_ago(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    clock = ManualClock()
    rt = replace(runtime, clock=clock)
    now, day, hour, minute = clock.now(), timedelta(days=1), timedelta(hours=1), timedelta(
        minutes=1)
    idle = timedelta(minutes=rt.settings.session_idle_minutes)
    # Each ended one way only (its other deadlines still ahead), a day and a minute ago or
    # 23 hours ago.
    sessions = {
        "live": (now - hour, now - minute, now + 7 * hour, None),
        "expired over a day ago": (now - day - 8 * hour, now - day - 2 * minute,
                                   now - day - minute, None),
        "expired 23 hours ago": (now - 31 * hour, now - 23 * hour - 2 * minute,
                                 now - 23 * hour, None),
        "idle over a day ago": (now - day - 20 * minute, now - day - idle - minute,
                                now - day + 7 * hour, None),
        "idle 23 hours ago": (now - 23 * hour - 30 * minute, now - 23 * hour - idle,
                              now - 16 * hour, None),
        "revoked over a day ago": (now - day - hour, now - day - minute, now - day + 7 * hour,
                                   now - day - minute),
        "revoked 23 hours ago": (now - 24 * hour, now - 23 * hour, now - 17 * hour,
                                 now - 23 * hour),
    }
    hashes = {}
    with rt.store.transaction() as session:
        for label, (created, last_seen, expires, revoked) in sessions.items():
            token_hash = secrets.token_bytes(32)
            hashes[token_hash] = label
            session.add(SessionRow(token_hash=token_hash,
                                   account_id=initialized.admin_id, created_at=created,
                                   last_seen_at=last_seen, expires_at=expires,
                                   revoked_at=revoked))
    token = login_admin(rt, initialized, current_step(rt)).token

    def remaining() -> set[str]:
        return {hashes.get(row["token_hash"], "logged in") for row in table(rt, SessionRow)}

    assert accounts.purge_sessions(rt) == 3
    assert remaining() == {"live", "logged in", "expired 23 hours ago", "idle 23 hours ago",
                           "revoked 23 hours ago"}
    assert accounts.purge_sessions(rt) == 0
    assert authenticate(rt, token).id == initialized.admin_id  # the live one still works
    clock.advance(hour + timedelta(seconds=1))  # the 23-hour-old ones pass a day
    assert accounts.purge_sessions(rt) == 3
    assert remaining() == {"live", "logged in"}


def test_service_api_key_authenticates_until_expiry_or_revocation(
        runtime: Runtime, initialized: bootstrap.InitResult, clock: ManualClock) -> None:
    admin = admin_principal(initialized)

    def create(name: str) -> accounts.NewService:
        return accounts.create_service(runtime, auditor(runtime), admin, name=name,
                                       grants=[Grant(Role.INGEST, "acme")])

    expiring, revoked = create("Seller Central Ingest"), create("Warehouse Sync")
    clock.advance(timedelta(days=100))
    kept = create("Tax Exporter")
    for service in (expiring, revoked, kept):
        assert service.api_key.startswith("svk_") and service.id.startswith("svc_")
        principal = authenticate(runtime, service.api_key)
        assert principal == Principal(service.id, "service", (Grant(Role.INGEST, "acme"),))
    for row in table(runtime, ApiKey):
        assert row["expires_at"] - row["created_at"] == timedelta(days=365)

    tamper(runtime, ApiKey, ApiKey.account_id == revoked.id, revoked_at=clock.now())
    clock.advance(timedelta(days=265))  # the first key is 365 days old, the last 265
    for service in (expiring, revoked):
        with pytest.raises(UnauthenticatedError):
            authenticate(runtime, service.api_key)
    assert authenticate(runtime, kept.api_key).id == kept.id


def test_configured_lifetimes_are_the_ones_applied(runtime: Runtime,
                                                   initialized: bootstrap.InitResult,
                                                   clock: ManualClock) -> None:
    tightened = runtime.settings.model_copy(update={
        "session_absolute_hours": 2, "session_idle_minutes": 5, "api_key_max_age_days": 30})
    rt = Runtime(tightened, runtime.store, runtime.keyring, runtime.clock)
    issued = login_admin(rt, initialized, current_step(rt))
    key = accounts.create_service(rt, auditor(rt), admin_principal(initialized),
                                  name="Seller Central Ingest", grants=[]).api_key
    [session_row] = table(rt, SessionRow)
    [key_row] = table(rt, ApiKey)
    assert session_row["expires_at"] - session_row["created_at"] == timedelta(hours=2)
    assert key_row["expires_at"] - key_row["created_at"] == timedelta(days=30)
    clock.advance(timedelta(minutes=5, seconds=1))
    authenticate(runtime, issued.token)  # still within the default 15 minutes
    clock.advance(timedelta(minutes=5, seconds=1))
    with pytest.raises(UnauthenticatedError):
        authenticate(rt, issued.token)
    assert authenticate(rt, key).kind == "service"


def _token_hash(rt: Runtime, token: str) -> str:
    """The session's key in the database: the token's keyed hash (never the token)."""
    pepper = rt.keyring.cached_system_key(accounts.CREDENTIAL_PEPPER)
    assert pepper is not None
    return keyed_hash(pepper, token)


# -- no credential in clear ------------------------------------------------------------------

def _forms(secret: str) -> list[bytes]:
    """A secret as text, and without the readable prefix a token carries."""
    forms = [secret.encode()]
    if secret[:4] in ("svs_", "svk_"):
        forms.append(secret[4:].encode())
    return forms


def test_database_holds_no_credential_in_clear(runtime: Runtime, settings: Settings,
                                               initialized: bootstrap.InitResult,
                                               bob: Person) -> None:
    """An attacker with a copy of the database (or, on SQLite, of the data directory) finds
    no session token, API key, password or TOTP secret they could present."""
    token = login_admin(runtime, initialized, current_step(runtime)).token
    api_key = accounts.create_service(runtime, auditor(runtime), admin_principal(initialized),
                                      name="Seller Central Ingest", grants=[]).api_key
    credentials = [token, api_key, ADMIN_PASSWORD, bob.password,
                   initialized.totp_secret, bob.totp_secret, *bob.recovery_codes]
    needles = [form for credential in credentials for form in _forms(credential)]
    needles += [base64.b32decode(secret) for secret in (initialized.totp_secret,
                                                        bob.totp_secret)]
    assert_nowhere_in_database(runtime, *needles)

    # Stored as keyed hashes: not even a plain SHA-256 of the token matches (that would let
    # a database reader confirm a guessed or leaked token offline).
    [session_row] = table(runtime, SessionRow)
    [key_row] = table(runtime, ApiKey)
    assert len(session_row["token_hash"]) == len(key_row["key_hash"]) == 32
    assert session_row["token_hash"] != hashlib.sha256(token.encode()).digest()
    assert key_row["key_hash"] != hashlib.sha256(api_key.encode()).digest()
    for row in table(runtime, Account, Account.kind == "person"):
        assert row["password_hash"].startswith("$argon2id$")
        assert row["totp_secret_ct"] is not None and len(row["totp_secret_ct"]) > 32

    if runtime.store.dialect == "sqlite":  # the files themselves, WAL included
        files = [path for path in settings.data_dir.rglob("*") if path.is_file()]
        assert any(path.name.endswith("-wal") for path in files)
        for path in files:
            content = path.read_bytes()
            for needle in needles:
                assert needle not in content, path.name


def test_login_timestamps_are_utc(runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    issued = login_admin(runtime, initialized, current_step(runtime))
    assert issued.expires_at.utcoffset() == timedelta(0)
    [row] = table(runtime, SessionRow)
    for column in ("created_at", "last_seen_at", "expires_at"):
        value: datetime = row[column]
        assert value.utcoffset() == timedelta(0), column
