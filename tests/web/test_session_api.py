"""The session API (``POST /session``, ``POST /password``) under concurrency, from the
attacker's side: a TOTP code is used once even when the requests carrying it arrive at the
same moment, and no session issued with the old password survives a password change that
overlapped it.

The deterministic tests hold the account's row lock in PostgreSQL (READ COMMITTED, as the
server runs) while the requests queue behind it, so the interleaving that broke the old
code (each request checking an earlier read, then writing) happens every time; the
barrier test sends the same requests at once with no help, on both databases.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import text, update

from sellervault.accounts import password_age
from sellervault.accounts import service as accounts
from sellervault.accounts.models import Account
from sellervault.runtime import Runtime
from tests.support import NEW_PASSWORD, Server, account_row_held

_people = iter(range(1_000_000))


def _new_person(runtime: Runtime) -> tuple[str, str, str]:
    """A person who may log in at once (made active with a password, as ``init`` makes the
    first administrator, so no TOTP step is used up by an enrolment), whose password is a day
    old: (account id, email, TOTP secret)."""
    number = next(_people)
    email = f"race.tester{number}@example.test"
    with runtime.store.transaction() as session:
        account_id, secret = accounts._add_person(
            runtime, session, email=email, name=f"Race Tester {number}",
            password=NEW_PASSWORD, created_by=None)
        # Set a day ago: old enough to be changed (``password_age``).
        session.execute(update(Account).where(Account.id == account_id).values(
            password_changed_at=runtime.clock.now() - password_age.MIN_AGE))
    assert secret is not None
    return account_id, email, secret


def _code(server: Server, secret: str, step_offset: int = 0) -> str:
    """A code for the server's clock's step (+ ``step_offset``)."""
    return pyotp.TOTP(secret).at(server.runtime.clock.timestamp() + 30 * step_offset)


def _login(server: Server, email: str, code: str) -> httpx.Response:
    with server.client() as client:
        return client.post("/session", json={"email": email, "password": NEW_PASSWORD,
                                             "totp": code})


def _change(server: Server, email: str, code: str) -> httpx.Response:
    with server.client() as client:
        return client.post("/password", json={
            "email": email, "current_password": NEW_PASSWORD, "totp": code,
            "new_password": "an entirely new passphrase 7"})


def _sessions(runtime: Runtime, account_id: str) -> int:
    with runtime.store.engine.connect() as connection:
        return int(connection.execute(text(
            "SELECT count(*) FROM sessions WHERE account_id = :a"), {"a": account_id}).scalar())


@contextmanager
def _row_locked(runtime: Runtime, account_id: str) -> Iterator[Callable[[int], None]]:
    """``account_row_held`` on PostgreSQL (see there)."""
    if runtime.store.dialect != "postgresql":
        pytest.skip("row locks and READ COMMITTED races are PostgreSQL's (SQLite serialises "
                    "writers; the barrier test covers it)")
    with account_row_held(runtime, account_id) as queued:
        yield queued


def test_one_totp_code_logs_in_once_when_two_logins_carry_it_at_once(
        server: Server) -> None:
    """The reported race: two logins with the right password and one code both passed the
    single-use check on their own read and both got a session. Now the second one's write
    finds the step used and it is refused like any replay."""
    account_id, email, secret = _new_person(server.runtime)
    code = _code(server, secret)
    with ThreadPoolExecutor(2) as pool, _row_locked(server.runtime, account_id) as queued:
        first = pool.submit(_login, server, email, code)
        second = pool.submit(_login, server, email, code)
        queued(2)  # both checked the code against their read; both wait to write
    statuses = sorted(future.result().status_code for future in (first, second))
    assert statuses == [200, 401]
    assert _sessions(server.runtime, account_id) == 1


def test_a_login_overlapping_a_password_change_gets_no_session(server: Server) -> None:
    """A change and a login released together (both queued on the account's row, where each
    takes its sign-in attempt; both then check the password at the same time). Whichever
    claims its code first, no session issued with the old password outlives a change that
    succeeded (before: a live session, issued after the change had revoked every session).
    The login's later code, once used, makes the change's earlier one a replay: then the
    change is refused and the session is a good one."""
    account_id, email, secret = _new_person(server.runtime)
    with ThreadPoolExecutor(2) as pool, _row_locked(server.runtime, account_id) as queued:
        change = pool.submit(_change, server, email, _code(server, secret))
        queued(1)  # the change goes first in the row's queue
        later = _code(server, secret, +1)  # a later, unused step
        login = pool.submit(_login, server, email, later)
        queued(2)
    changed, logged_in = change.result(), login.result()
    assert (changed.status_code, logged_in.status_code) in ((204, 401), (204, 200), (401, 200))
    if changed.status_code == 204 and logged_in.status_code == 200:
        with server.client(logged_in.json()["token"]) as client:
            assert client.get("/session").status_code == 401  # revoked by the change
    if logged_in.status_code == 401:
        assert logged_in.json()["error"]["code"] == "invalid_credentials"
        assert _sessions(server.runtime, account_id) == 0


def test_a_session_issued_just_before_a_password_change_is_revoked(server: Server) -> None:
    """The other order: the login goes first in the row's queue, so its session exists, and
    the change that follows revokes it."""
    account_id, email, secret = _new_person(server.runtime)
    with ThreadPoolExecutor(2) as pool, _row_locked(server.runtime, account_id) as queued:
        login = pool.submit(_login, server, email, _code(server, secret))
        queued(1)
        change = pool.submit(_change, server, email, _code(server, secret, +1))
        queued(2)
    token = login.result().json()["token"]
    assert change.result().status_code == 204
    with server.client(token) as client:
        assert client.get("/session").status_code == 401


@pytest.mark.usefixtures("production_passwords")  # (the race's window: a real check)
@pytest.mark.parametrize("requests", [6])
def test_simultaneous_logins_with_one_code_give_one_session(server: Server,
                                                            requests: int) -> None:
    """The same, with nothing held: the requests are released together by a barrier."""
    account_id, email, secret = _new_person(server.runtime)
    code = _code(server, secret)
    barrier = threading.Barrier(requests)

    def attempt() -> int:
        barrier.wait()
        return _login(server, email, code).status_code

    with ThreadPoolExecutor(requests) as pool:
        statuses = sorted(pool.map(lambda _: attempt(), range(requests)))
    assert statuses == [200] + [401] * (requests - 1)
    assert _sessions(server.runtime, account_id) == 1


@pytest.mark.usefixtures("production_passwords")  # (the race's window: a real check)
def test_failed_attempts_at_the_same_moment_are_all_counted(server: Server) -> None:
    """The failure counter is incremented in the database, so simultaneous failures are not
    lost to each other (the lockout reads it: four is under its threshold of five)."""
    account_id, email, _ = _new_person(server.runtime)
    barrier = threading.Barrier(4)

    def attempt(_: Any) -> int:
        barrier.wait()
        return _login(server, email, "000000").status_code

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(attempt, range(4))) == [401] * 4
    with server.runtime.store.engine.connect() as connection:
        assert connection.execute(text("SELECT failed_logins FROM accounts WHERE id = :a"),
                                  {"a": account_id}).scalar() == 4
