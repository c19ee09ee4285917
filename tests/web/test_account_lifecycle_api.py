"""The account lifecycle routes of the accounts API (web/api/accounts.py), through a real
HTTPS server: show, offboard, end date, networks, grants, API keys.

Each is the administrator's alone (the role matrix walks every other role against them);
here: each does what it says at the next request, a bad request is a 422 that changes
nothing and echoes nothing, each change is an event naming the administrator and the
account, and a key about to expire says so on every response.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from sellervault.accounts import lifecycle
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from tests.support import Server


@pytest.fixture
def admin(server: Server) -> str:
    """A fresh session for each test: tests move the module's clock past a session's idle
    timeout."""
    return server.admin_token()


def admin_id(server: Server, admin: str) -> str:
    with server.client(admin) as client:
        return str(client.get("/session").json()["account_id"])


def service(server: Server, admin: str, name: str) -> tuple[str, str]:
    """A new ingest service on acme: (its id, its API key)."""
    with server.client(admin) as client:
        created = client.post("/accounts", json={
            "kind": "service", "name": name,
            "grants": [{"role": "ingest", "tenant": "acme"}]}).json()
    return created["id"], created["api_key"]


def ingest_status(server: Server, key: str, tenant: str = "acme") -> int:
    with server.client(key) as client:
        return client.post(f"/tenants/{tenant}/orders", json={"orders": []}).status_code


def last_event(server: Server, action: str) -> Any:
    with server.runtime.store.engine.connect() as connection:
        return connection.execute(select(EventRow).where(EventRow.action == action,
                                                         EventRow.outcome == "success")
                                  .order_by(EventRow.seq.desc())).first()


def test_show_gives_grants_and_key_ids_never_a_secret(server: Server, admin: str) -> None:
    account_id, key = service(server, admin, "show printer")
    with server.client(admin) as client:
        shown = client.get(f"/accounts/{account_id}")
        missing = client.get("/accounts/svc_000000000000000000000000")
    assert shown.status_code == 200
    body = shown.json()
    assert (body["grants"], body["networks"], body["ends_at"]) == (
        [{"role": "ingest", "tenant": "acme"}], [], None)
    [listed] = body["api_keys"]
    assert set(listed) == {"key_id", "created_at", "expires_at", "revoked_at"}
    assert key not in shown.text and "hash" not in shown.text
    assert missing.status_code == 404


def test_offboarding_stops_the_key_at_the_next_request(server: Server, admin: str) -> None:
    account_id, key = service(server, admin, "leaving printer")
    assert ingest_status(server, key) == 422  # reaches validation: the key works
    with server.client(admin) as client:
        done = client.post(f"/accounts/{account_id}/offboard")
    assert done.status_code == 200
    assert done.json() == {"id": account_id, "status": "disabled", "sessions_ended": 0,
                           "api_keys_revoked": 1, "grants_removed": 1}
    assert ingest_status(server, key) == 401
    event = last_event(server, "accounts:offboard")
    assert (event.actor_id, event.target_id) == (admin_id(server, admin), account_id)


def test_an_end_date_stops_the_key_when_it_comes(server: Server, admin: str) -> None:
    clock = server.runtime.clock
    assert isinstance(clock, ManualClock)
    account_id, key = service(server, admin, "contract printer")
    ends_at = clock.now() + timedelta(hours=1)
    with server.client(admin) as client:
        past = client.put(f"/accounts/{account_id}/end-date",
                          json={"ends_at": clock.now().isoformat()})
        naive = client.put(f"/accounts/{account_id}/end-date",
                           json={"ends_at": "2030-01-01T00:00:00"})
        set_ = client.put(f"/accounts/{account_id}/end-date",
                          json={"ends_at": ends_at.isoformat()})
    assert (past.status_code, naive.status_code, set_.status_code) == (422, 422, 200)
    assert ingest_status(server, key) == 422
    clock.set(ends_at)
    assert ingest_status(server, key) == 401  # stopped at its end date, job or no job
    # The account-end-dates job then disables it: run here, so the state does not depend on
    # whether the server's scheduler got there first (it ticks each real second).
    lifecycle.disable_ended(server.runtime)
    with server.client(server.admin_token()) as client:  # an hour on: a new session
        assert client.put(f"/accounts/{account_id}/end-date",
                          json={"ends_at": None}).status_code == 200
        assert ingest_status(server, key) == 401  # still disabled: an admin re-enables
        assert client.post(f"/accounts/{account_id}/enable").status_code == 200
    assert ingest_status(server, key) == 422


def test_networks_restrict_where_a_key_works(server: Server, admin: str) -> None:
    account_id, key = service(server, admin, "office printer")
    with server.client(admin) as client:
        bad = client.put(f"/accounts/{account_id}/networks", json={"networks": ["10.0.0.1/8"]})
        elsewhere = client.put(f"/accounts/{account_id}/networks",
                               json={"networks": ["203.0.113.0/24"]})
    assert bad.status_code == 422 and "10.0.0.1" not in bad.text
    assert elsewhere.json() == {"id": account_id, "networks": ["203.0.113.0/24"]}
    assert ingest_status(server, key) == 401  # the test client is on loopback
    with server.client(admin) as client:
        client.put(f"/accounts/{account_id}/networks", json={"networks": ["127.0.0.0/8"]})
    assert ingest_status(server, key) == 422


def test_a_grant_added_and_revoked_through_the_api(server: Server, admin: str) -> None:
    account_id, key = service(server, admin, "two-shop printer")
    assert ingest_status(server, key, "globex") == 404
    with server.client(admin) as client:
        added = client.post(f"/accounts/{account_id}/grants",
                            json={"role": "ingest", "tenant": "globex"})
        again = client.post(f"/accounts/{account_id}/grants",
                            json={"role": "ingest", "tenant": "globex"})
        pii = client.post(f"/accounts/{account_id}/grants",
                          json={"role": "pii-reader", "tenant": "acme"})
        star_admin = client.post(f"/accounts/{account_id}/grants",
                                 json={"role": "admin", "tenant": "acme"})
    assert (added.status_code, again.status_code, pii.status_code,
            star_admin.status_code) == (201, 409, 409, 422)
    assert ingest_status(server, key, "globex") == 422
    event = last_event(server, "grants:add")
    assert (event.target_id, event.tenant_id, event.criteria) == (account_id, "globex",
                                                                  "ingest")
    with server.client(admin) as client:
        revoked = client.post(f"/accounts/{account_id}/grants/revoke",
                              json={"role": "ingest", "tenant": "globex"})
        last_admin = client.post(f"/accounts/{admin_id(server, admin)}/grants/revoke",
                                 json={"role": "admin", "tenant": "*"})
    assert revoked.status_code == 200
    assert last_admin.status_code == 422  # one's own grants are changed by another
    assert ingest_status(server, key, "globex") == 404


def test_rotation_and_revocation_through_the_api(server: Server, admin: str) -> None:
    account_id, old = service(server, admin, "rotating printer")
    with server.client(admin) as client:
        too_long = client.post(f"/accounts/{account_id}/api-keys", json={"overlap_hours": 721})
        rotated = client.post(f"/accounts/{account_id}/api-keys", json={"overlap_hours": 0})
    assert (too_long.status_code, rotated.status_code) == (422, 201)
    new = rotated.json()
    assert ingest_status(server, old) == 401
    assert ingest_status(server, new["api_key"]) == 422
    with server.client(admin) as client:
        revoked = client.post(f"/accounts/{account_id}/api-keys/{new['key_id']}/revoke")
        twice = client.post(f"/accounts/{account_id}/api-keys/{new['key_id']}/revoke")
    assert (revoked.status_code, twice.status_code) == (200, 409)
    assert ingest_status(server, new["api_key"]) == 401


def test_a_key_within_thirty_days_of_its_end_says_so_on_every_response(
        server: Server, admin: str) -> None:
    clock = server.runtime.clock
    assert isinstance(clock, ManualClock)
    account_id, key = service(server, admin, "ageing printer")
    with server.client(admin) as client:
        [listed] = client.get(f"/accounts/{account_id}").json()["api_keys"]
    with server.client(key) as client:
        assert "x-sellervault-key-expires" not in client.get("/session").headers
    expires_at = datetime.fromisoformat(listed["expires_at"])
    clock.set(expires_at - timedelta(days=30))
    with server.client(key) as client:
        response = client.get("/session")
        refused = client.post("/tenants/globex/orders", json={"orders": []})
    assert response.headers["x-sellervault-key-expires"] == expires_at.isoformat()
    assert refused.status_code == 404
    assert refused.headers["x-sellervault-key-expires"] == expires_at.isoformat()
