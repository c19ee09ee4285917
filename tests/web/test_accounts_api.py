"""The accounts API: only administrators create and list accounts; secrets are shown once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import NEW_PASSWORD, Server


@pytest.fixture(scope="module")
def admin(server: Server) -> str:
    return server.admin_token()


def _create(server: Server, token: str, body: dict[str, Any]) -> Any:
    with server.client(token) as client:
        return client.post("/accounts", json=body)


def test_person_gets_one_time_password_and_totp_secret(server: Server, admin: str) -> None:
    response = _create(server, admin, {"kind": "person", "email": "carol.chen@example.test",
                                       "name": "Carol Chen",
                                       "grants": [{"role": "analyst", "tenant": "acme"}]})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "one_time_password", "totp_secret"}
    with server.client() as client:
        first = client.post("/session", json={"email": "carol.chen@example.test",
                                              "password": body["one_time_password"],
                                              "totp": server.next_totp(body["totp_secret"])})
    assert first.status_code == 403
    assert first.json()["error"]["code"] == "password_change_required"


def test_service_gets_an_api_key_that_authenticates(server: Server, admin: str) -> None:
    response = _create(server, admin, {"kind": "service", "name": "label printer",
                                       "grants": [{"role": "ingest", "tenant": "acme"}]})
    assert response.status_code == 201
    key = response.json()["api_key"]
    assert key.startswith("svk_")
    with server.client(key) as client:
        assert client.post("/tenants/acme/orders", json={"orders": []}).status_code == 422


@pytest.mark.parametrize("body,status", [
    ({"kind": "person", "email": "x.y@example.test", "name": "Admin", "grants": []}, 422),
    ({"kind": "person", "email": "admin@example.test", "name": "Ada Lovelace"}, 422),
    ({"kind": "person", "name": "No Email"}, 422),
    ({"kind": "service", "name": "svc", "email": "s@example.test"}, 422),
    ({"kind": "robot", "name": "R2"}, 422),
    ({"kind": "service", "name": "etl", "grants": [{"role": "root", "tenant": "acme"}]}, 422),
    ({"kind": "service", "name": "etl", "grants": [{"role": "ingest", "tenant": "Bad Tenant"}]},
     422),
    ({"kind": "service", "name": "etl", "grants": [{"role": "admin", "tenant": "acme"}]}, 422),
    ({"kind": "service", "name": "etl", "unexpected": True}, 422),
])
def test_bad_account_requests_are_refused(server: Server, admin: str, body: dict[str, Any],
                                          status: int) -> None:
    response = _create(server, admin, body)
    assert response.status_code == status, response.text
    assert "error" in response.json()


def test_duplicate_email_is_a_conflict(server: Server, admin: str) -> None:
    body = {"kind": "person", "email": "dan.dupe@example.test", "name": "Dan Dupe"}
    assert _create(server, admin, body).status_code == 201
    again = _create(server, admin, {**body, "email": "DAN.DUPE@example.test"})
    assert again.status_code == 409


def test_non_admins_cannot_create_or_list(server: Server, admin: str) -> None:
    token, _ = server.create_person(admin, "erin.reader@example.test", "Erin Reader",
                                    [{"role": "pii-reader", "tenant": "*"}])
    with server.client(token) as client:
        assert client.get("/accounts").status_code == 403
        made = client.post("/accounts", json={"kind": "service", "name": "sneaky",
                                              "grants": [{"role": "admin", "tenant": "*"}]})
    assert made.status_code == 403


def test_listing_shows_grants_and_no_secrets(server: Server, admin: str) -> None:
    with server.client(admin) as client:
        response = client.get("/accounts")
    assert response.status_code == 200
    accounts = response.json()["accounts"]
    assert any(g == {"role": "admin", "tenant": "*"} for a in accounts for g in a["grants"])
    for secretish in ("password", "totp", "api_key", "hash", NEW_PASSWORD):
        assert secretish not in response.text


def test_session_read_names_the_account_and_needs_a_token(server: Server, admin: str) -> None:
    with server.client(admin) as client:
        me = client.get("/session")
    assert me.status_code == 200
    assert {"role": "admin", "tenant": "*"} in me.json()["grants"]
    with server.client("svk_not-a-real-key") as client:
        assert client.get("/session").status_code == 401
