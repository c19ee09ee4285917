"""The approvals API: an admin cannot mint a working PII key alone; a security officer who
is not the creator approves or rejects, once; two decisions at the same moment cannot both
pass."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.support import Server


@pytest.fixture(scope="module")
def people(server: Server) -> dict[str, str]:
    admin = server.admin_token()
    officers = [server.create_person(admin, f"sam.officer{n}@example.test",
                                     f"Sam Officer {n}",
                                     [{"role": "security-officer", "tenant": "*"}])[0]
                for n in (1, 2)]
    return {"admin": admin, "officer": officers[0], "other_officer": officers[1]}


def _pii_service(server: Server, admin: str, name: str) -> dict[str, Any]:
    with server.client(admin) as client:
        response = client.post("/accounts", json={
            "kind": "service", "name": name,
            "grants": [{"role": "pii-reader", "tenant": "acme"}]})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _whoami(server: Server, key: str) -> int:
    with server.client(key) as client:
        return client.get("/session").status_code


def _post(server: Server, token: str, path: str) -> Any:
    with server.client(token) as client:
        return client.post(path)


def test_an_admin_alone_gets_an_inert_pii_key(server: Server, people: dict[str, str]) -> None:
    created = _pii_service(server, people["admin"], "shipping labels")
    assert created["status"] == "pending" and created["api_key"].startswith("svk_")
    assert _whoami(server, created["api_key"]) == 401
    refused = _post(server, people["admin"], f"/approvals/{created['id']}/approve")
    assert refused.status_code == 403  # not a security officer
    assert _whoami(server, created["api_key"]) == 401

    with server.client(people["officer"]) as client:
        listed = client.get("/approvals").json()["approvals"]
    mine = next(item for item in listed if item["account_id"] == created["id"])
    assert mine["grants"] == [{"role": "pii-reader", "tenant": "acme"}]
    approved = _post(server, people["officer"], f"/approvals/{created['id']}/approve")
    assert approved.status_code == 200 and approved.json()["status"] == "active"
    assert _whoami(server, created["api_key"]) == 200


def test_pii_reader_on_every_tenant_is_refused_for_a_service(server: Server,
                                                             people: dict[str, str]) -> None:
    with server.client(people["admin"]) as client:
        response = client.post("/accounts", json={
            "kind": "service", "name": "everything reader",
            "grants": [{"role": "pii-reader", "tenant": "*"}]})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_account"


def test_a_decided_account_cannot_be_decided_again(server: Server,
                                                   people: dict[str, str]) -> None:
    created = _pii_service(server, people["admin"], "tax exporter")
    assert _post(server, people["officer"],
                 f"/approvals/{created['id']}/reject").json()["status"] == "rejected"
    again = _post(server, people["other_officer"], f"/approvals/{created['id']}/approve")
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_pending"
    assert _whoami(server, created["api_key"]) == 401


def test_two_officers_deciding_at_once_make_one_decision(server: Server,
                                                         people: dict[str, str]) -> None:
    """An approval and a rejection at the same moment: one is made, the other finds nothing
    pending (409); the key's fate matches the decision that was made."""
    created = _pii_service(server, people["admin"], "invoice printer")
    barrier = threading.Barrier(2)

    def decide(token_and_decision: tuple[str, str]) -> Any:
        token, decision = token_and_decision
        barrier.wait()
        return _post(server, token, f"/approvals/{created['id']}/{decision}")

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(decide, [(people["officer"], "approve"),
                                         (people["other_officer"], "reject")]))
    assert sorted(a.status_code for a in answers) == [200, 409]
    made = next(a for a in answers if a.status_code == 200).json()["status"]
    assert _whoami(server, created["api_key"]) == (200 if made == "active" else 401)


def test_a_malformed_account_id_is_422_and_not_echoed(server: Server,
                                                      people: dict[str, str]) -> None:
    response = _post(server, people["officer"], "/approvals/alice@example.test/approve")
    assert response.status_code == 422
    assert "alice@example.test" not in response.text
