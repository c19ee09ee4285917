"""Enrolment through the HTTPS API, from the side of whoever holds or guesses a token:

- The person, with the token, gets their own TOTP secret, sets their own password (every
  password rule applies) and gets ten recovery codes; then signs in.
- The token works once: used twice, used after 72 hours, forged, or sent by two finishes at
  the same moment, it is refused (401 ``invalid_enrolment``) and nothing changes.
- Starting again gives a new secret, and a finish proved with the old one fails.
- A recovery code signs in once in place of a TOTP code; replayed, or sent twice at once,
  it gets one session. It never works without the password.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pyotp
import pytest

from sellervault.clock import ManualClock
from tests.support import NEW_PASSWORD, Server


def _person(server: Server, email: str) -> dict[str, Any]:
    with server.client(server.admin_token()) as client:
        created = client.post("/accounts", json={
            "kind": "person", "email": email, "name": "Enid Enrolling",
            "grants": [{"role": "analyst", "tenant": "acme"}]})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def _post(server: Server, path: str, body: dict[str, Any]) -> Any:
    with server.client() as client:
        return client.post(path, json=body)


def _start(server: Server, token: str) -> Any:
    return _post(server, "/enrolment/start", {"token": token})


def _finish(server: Server, token: str, secret: str, password: str = NEW_PASSWORD) -> Any:
    return _post(server, "/enrolment/finish", {"token": token, "new_password": password,
                                              "totp": server.next_totp(secret)})


def _sign_in(server: Server, email: str, second_factor: str) -> Any:
    return _post(server, "/session", {"email": email, "password": NEW_PASSWORD,
                                      "totp": second_factor})


def test_enrol_then_sign_in_and_the_token_is_spent(server: Server) -> None:
    created = _person(server, "enid.one@example.test")
    secret = _start(server, created["enrolment_token"]).json()["totp_secret"]
    assert len(pyotp.TOTP(secret).now()) == 6
    finished = _finish(server, created["enrolment_token"], secret)
    assert finished.status_code == 200, finished.text
    assert len(set(finished.json()["recovery_codes"])) == 10
    assert _sign_in(server, "enid.one@example.test", server.next_totp(secret)).status_code == 200
    for again in (_start(server, created["enrolment_token"]),
                  _finish(server, created["enrolment_token"], secret)):
        assert again.status_code == 401
        assert again.json()["error"]["code"] == "invalid_enrolment"


def test_a_forged_or_late_token_is_refused(server: Server) -> None:
    created = _person(server, "enid.late@example.test")
    for forged in ("sve_" + "A" * 43, "svs_" + created["enrolment_token"][4:],
                   created["enrolment_token"] + "x", "x" * 128):
        response = _start(server, forged)
        assert response.status_code == 401, forged
    assert isinstance(server.runtime.clock, ManualClock)
    server.runtime.clock.advance(timedelta(hours=72))
    assert _start(server, created["enrolment_token"]).status_code == 401


def test_the_password_rules_apply_and_a_refusal_keeps_the_token(server: Server) -> None:
    created = _person(server, "enid.rules@example.test")
    secret = _start(server, created["enrolment_token"]).json()["totp_secret"]
    for weak in ("short", "enid.rules is my password"):
        refused = _finish(server, created["enrolment_token"], secret, weak)
        assert refused.status_code == 422, weak
    wrong_code = _post(server, "/enrolment/finish", {
        "token": created["enrolment_token"], "new_password": NEW_PASSWORD, "totp": "000000"})
    assert wrong_code.status_code == 422
    assert wrong_code.json()["error"]["code"] == "invalid_totp"
    assert _finish(server, created["enrolment_token"], secret).status_code == 200


def test_starting_again_replaces_the_secret(server: Server) -> None:
    created = _person(server, "enid.twice@example.test")
    first = _start(server, created["enrolment_token"]).json()["totp_secret"]
    second = _start(server, created["enrolment_token"]).json()["totp_secret"]
    assert first != second
    assert _finish(server, created["enrolment_token"], first).status_code == 422
    assert _finish(server, created["enrolment_token"], second).status_code == 200


@pytest.mark.usefixtures("production_passwords")  # (the race's window: a real check)
@pytest.mark.parametrize("finishers", [4])
def test_finishes_at_the_same_moment_enrol_once(server: Server, finishers: int) -> None:
    created = _person(server, f"enid.race{finishers}@example.test")
    secret = _start(server, created["enrolment_token"]).json()["totp_secret"]
    code = server.next_totp(secret)
    at_once = threading.Barrier(finishers)

    def finish(n: int) -> int:
        at_once.wait()
        return int(_post(server, "/enrolment/finish", {
            "token": created["enrolment_token"], "new_password": f"{NEW_PASSWORD} {n}",
            "totp": code}).status_code)

    with ThreadPoolExecutor(finishers) as pool:
        statuses = sorted(pool.map(finish, range(finishers)))
    assert statuses == [200] + [401] * (finishers - 1)


@pytest.mark.usefixtures("production_passwords")  # (the race's window: a real check)
def test_a_recovery_code_signs_in_once(server: Server) -> None:
    email = "enid.recovers@example.test"
    created = _person(server, email)
    secret = _start(server, created["enrolment_token"]).json()["totp_secret"]
    codes = _finish(server, created["enrolment_token"], secret).json()["recovery_codes"]
    with server.client() as client:
        wrong_password = client.post("/session", json={
            "email": email, "password": "not the password at all", "totp": codes[0]})
    assert wrong_password.status_code == 401
    assert _sign_in(server, email, codes[0].lower()).status_code == 200  # as typed
    assert _sign_in(server, email, codes[0]).status_code == 401  # used
    at_once = threading.Barrier(3)

    def attempt(_: int) -> int:
        at_once.wait()
        return int(_sign_in(server, email, codes[1]).status_code)

    with ThreadPoolExecutor(3) as pool:
        assert sorted(pool.map(attempt, range(3))) == [200, 401, 401]
    assert _sign_in(server, email, "ABCD-EFGH-JKLM-NPQR").status_code == 401  # not one of hers


def test_an_admin_sends_a_person_who_lost_their_authenticator_back_to_enrolment(
        server: Server) -> None:
    """POST /accounts/{id}/enrolment: a new token, and nothing of the person's; they enrol
    again over HTTPS and sign in with the new authenticator."""
    created = _person(server, "enid.lost@example.test")
    first = _start(server, created["enrolment_token"]).json()["totp_secret"]
    assert _finish(server, created["enrolment_token"], first).status_code == 200
    with server.client(server.admin_token()) as client:
        again = client.post(f"/accounts/{created['id']}/enrolment")
    assert again.status_code == 201, again.text
    assert set(again.json()) == {"id", "enrolment_token", "expires_at"}
    token = again.json()["enrolment_token"]
    assert _sign_in(server, "enid.lost@example.test", server.next_totp(first)).status_code == 401
    secret = _start(server, token).json()["totp_secret"]
    reused = _finish(server, token, secret)  # NEW_PASSWORD again: one of the last ten
    assert (reused.status_code, reused.json()["error"]["code"]) == (422, "password_reused")
    assert _finish(server, token, secret, "a different passphrase now").status_code == 200
    signed_in = _post(server, "/session", {"email": "enid.lost@example.test",
                                           "password": "a different passphrase now",
                                           "totp": server.next_totp(secret)})
    assert signed_in.status_code == 200, signed_in.text
