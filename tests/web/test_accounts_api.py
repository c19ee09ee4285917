"""The accounts API: only administrators create and list accounts; secrets are shown once.

One account per mailbox: lookalike emails are a 409 even when sent at the same moment, and a
refusal (422 or 409) never repeats the email or name it refused.
"""

from __future__ import annotations

import json
import threading
from typing import Any, get_args

import httpx
import pytest
from sqlalchemy import func, select

from sellervault.access.roles import GLOBAL_ROLES, Role
from sellervault.accounts.models import Account
from sellervault.web.api.accounts import ServiceWideGrantIn, TenantGrantIn
from tests.support import NEW_PASSWORD, Server

CYRILLIC_A = "\N{CYRILLIC SMALL LETTER A}"
CYRILLIC_ER = "\N{CYRILLIC SMALL LETTER ER}"  # looks like p
CYRILLIC_O = "\N{CYRILLIC SMALL LETTER O}"


def fullwidth(text: str) -> str:
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


@pytest.fixture(scope="module")
def admin(server: Server) -> str:
    return server.admin_token()


def _create(server: Server, token: str, body: dict[str, Any]) -> Any:
    with server.client(token) as client:
        return client.post("/accounts", json=body)


def test_a_person_is_created_with_an_enrolment_token_only(server: Server, admin: str) -> None:
    response = _create(server, admin, {"kind": "person", "email": "carol.chen@example.test",
                                       "name": "Carol Chen",
                                       "grants": [{"role": "analyst", "tenant": "acme"}]})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "enrolment_token", "expires_at"}
    assert body["enrolment_token"].startswith("sve_")


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
                                    [{"role": "pii-reader", "tenant": "acme"}])
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


def _echoes(response: httpx.Response, *submitted: str) -> list[str]:
    """Which of the submitted values (as sent, or case-folded) the response carries, in its
    raw text or its decoded JSON."""
    decoded = json.dumps(response.json(), ensure_ascii=False)
    return [value for value in submitted
            for form in {value, value.strip().casefold()}
            if form in response.text or form in decoded]


@pytest.fixture(scope="module")
def gil(server: Server, admin: str) -> str:
    """A person whose lookalikes the tests below submit."""
    email = "gil.ghost@example.test"
    response = _create(server, admin, {"kind": "person", "email": email, "name": "Gil Ghost"})
    assert response.status_code == 201, response.text
    return email


@pytest.mark.parametrize("email", [
    f"gil.gh{CYRILLIC_O}st@example.test",
    "gil.ghost+vault@example.test",
    fullwidth("GIL.GHOST") + "@example.test",
    f"gil.ghost@ex{CYRILLIC_A}mple.test",
])
def test_a_lookalike_of_an_existing_email_is_a_conflict_that_does_not_echo_it(
        server: Server, admin: str, gil: str, email: str) -> None:
    name = "Gilbert Ghostly"
    response = _create(server, admin, {"kind": "person", "email": email, "name": name})
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "account_exists"
    assert _echoes(response, email, name, gil, "gil.ghost") == []


@pytest.mark.parametrize("body", [
    {"kind": "person", "email": f"{CYRILLIC_A}dmin@example.test", "name": "Ada Lovelace"},
    {"kind": "person", "email": "admin+ada@example.test", "name": "Ada Lovelace"},
    {"kind": "person", "email": fullwidth("support") + "@example.test", "name": "Ada Lovelace"},
    {"kind": "person", "email": "ada.lovelace@example.test",
     "name": f"{CYRILLIC_A.upper()}dmin"},
    {"kind": "service", "name": f"{CYRILLIC_A.upper()}dmin"},
    {"kind": "service", "name": fullwidth("root")},
])
def test_a_generic_lookalike_is_refused_without_echoing_it(server: Server, admin: str,
                                                          body: dict[str, Any]) -> None:
    response = _create(server, admin, body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_account"
    submitted = [body["name"]] + ([body["email"], body["email"].split("@")[0]]
                                  if "email" in body else [])
    assert _echoes(response, *submitted) == []


def test_lookalikes_created_at_the_same_moment_make_one_account(server: Server,
                                                                admin: str) -> None:
    """Four administrators' requests for Quinn, each a different spelling of one mailbox,
    released together: exactly one is created, the others are 409 (not 500), and one row
    exists. On PostgreSQL the requests run in parallel and the unique index decides; on
    SQLite the writers take turns and the check before the insert does."""
    emails = ["quinn.racer@example.test",
              f"quinn.r{CYRILLIC_A}cer@example.test",
              "quinn.racer+1@example.test",
              fullwidth("QUINN.RACER") + "@example.test"]
    start = threading.Barrier(len(emails))
    statuses: list[int] = []

    def create(email: str) -> None:
        body = {"kind": "person", "email": email, "name": "Quinn Racer",
                "grants": [{"role": "analyst", "tenant": "acme"}]}
        with server.client(admin) as client:
            client.get("/session")  # connected and authenticated before the start
            start.wait(timeout=30)
            statuses.append(client.post("/accounts", json=body).status_code)

    threads = [threading.Thread(target=create, args=(email,)) for email in emails]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [201, 409, 409, 409]
    with server.runtime.store.engine.connect() as connection:
        made = connection.execute(select(func.count()).select_from(Account)
                                  .where(Account.name == "Quinn Racer")).scalar()
    assert made == 1


def test_the_grant_schema_knows_which_roles_are_service_wide() -> None:
    """The document states what ``Grant`` enforces (a service-wide role only on '*'), so a
    client, or a fuzzer, is not told a grant is valid that the API then refuses."""
    service_wide = set(get_args(ServiceWideGrantIn.model_fields["role"].annotation))
    on_a_tenant = set(get_args(TenantGrantIn.model_fields["role"].annotation))
    assert service_wide == set(GLOBAL_ROLES)
    assert service_wide | on_a_tenant == set(Role) and not service_wide & on_a_tenant


@pytest.mark.parametrize("grants", [
    [{"role": "pii-reader", "tenant": "*"}],
    [{"role": "security-officer", "tenant": "*"}, {"role": "pii-reader", "tenant": "acme"}],
    [{"role": "auditor", "tenant": "*"}, {"role": "pii-reader", "tenant": "acme"}],
])
def test_grants_that_would_spread_pii_are_refused_for_a_person(
        server: Server, admin: str, grants: list[dict[str, str]]) -> None:
    """Least privilege at granting: PII on named tenants only, and never to an account that
    administers, runs, polices or audits the service. Nothing is created."""
    with server.client(admin) as client:
        before = client.get("/accounts").json()["accounts"]
        response = client.post("/accounts", json={
            "kind": "person", "email": "greedy.gail@example.test", "name": "Gail Greedy",
            "grants": grants})
        after = client.get("/accounts").json()["accounts"]
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_account"
    assert after == before
