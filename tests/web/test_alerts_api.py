"""The alerts API through a real HTTPS server whose detectors are attached: ten forbidden
requests by one service raise one ``unauthorized-calls`` alert naming it, which a security
officer lists, assigns, acknowledges and closes; the shape holds ids only, never PII; bad
ids are 422, unknown ones 404, a change that does not apply 409. A canary revealed locks
the reader (its next request 401) until a security officer re-enables it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sellervault.audit.auditor import Auditor
from sellervault.audit.events import SYSTEM_ACTOR
from sellervault.records import service as records
from sellervault.records.spapi import map_order, validate_order
from sellervault.records.synthetic import synthetic_orders
from tests.cli.helpers import Cli
from tests.support import Server


@pytest.fixture(scope="module")
def officer(server: Server) -> str:
    return server.create_service(server.admin_token(), "alert desk",
                                 [{"role": "security-officer", "tenant": "*"}])


def test_forbidden_calls_raise_an_alert_a_security_officer_works(server: Server,
                                                                  officer: str) -> None:
    prober = server.create_service(server.admin_token(), "curious ingest",
                                   [{"role": "ingest", "tenant": "acme"}])
    with server.client(prober) as client:
        for _ in range(10):
            assert client.get("/audit/events").status_code == 403
        prober_id = client.get("/session").json()["account_id"]
    assert server.runtime.audit.subscribers.wait_idle(10)
    with server.client(officer) as client:
        listed = client.get("/alerts", params={"status": "open"})
        assert listed.status_code == 200
        [alert] = [a for a in listed.json()["alerts"] if a["principal_id"] == prober_id]
        assert set(alert) == {"id", "rule", "severity", "subject", "principal_id",
                              "created_at", "status", "assigned_to"}
        assert (alert["rule"], alert["severity"], alert["subject"], alert["status"]) == (
            "unauthorized-calls", "high", prober_id, "open")
        assigned = client.post(f"/alerts/{alert['id']}/assign", json={})
        assert assigned.status_code == 200 and assigned.json()["assigned_to"] is not None
        assert client.post(f"/alerts/{alert['id']}/acknowledge").json()["status"] == \
            "acknowledged"
        assert client.post(f"/alerts/{alert['id']}/close").json()["status"] == "closed"
        again = client.post(f"/alerts/{alert['id']}/close")
        assert again.status_code == 409 and again.json()["error"]["code"] == "alert_state"
        assert client.post("/alerts/alr_000000000000000000000000/close").status_code == 404
        assert client.post("/alerts/not-an-alert/close").status_code == 422
        assert client.get("/alerts", params={"status": "gone"}).status_code == 422


def test_the_cli_lists_and_closes_alerts(server: Server, officer: str,
                                         tmp_path: Path) -> None:
    prober = server.create_service(server.admin_token(), "another prober",
                                   [{"role": "analyst", "tenant": "acme"}])
    with server.client(prober) as client:
        for _ in range(10):
            client.get("/accounts")
    assert server.runtime.audit.subscribers.wait_idle(10)
    cli = Cli(tmp_path)
    assert cli.run("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                   "--api-key-stdin", stdin=officer + "\n").code == 0
    listed = cli.invoke("alerts", "list", "--status", "open", "--json")
    assert listed.code == 0, listed
    alert_id = listed.json()[0]["id"]
    closed = cli.invoke("alerts", "close", alert_id)
    assert closed.code == 0 and f"Alert {alert_id} is closed." in closed.stdout
    again = cli.invoke("alerts", "close", alert_id)
    assert again.code == 1 and "alert_state" in again.stderr


def test_a_canary_revealed_locks_the_reader_until_a_security_officer_re_enables_it(
        server: Server, officer: str) -> None:
    """The reveal answers like any other; the reader's very next request is refused (locked
    in the request, before the answer); the alert is critical and names it; a security
    officer re-enables it and its key works again."""
    raw = list(synthetic_orders(1, start=900, seed=9))
    records.seed_canaries(server.runtime, Auditor(server.runtime.audit, SYSTEM_ACTOR),
                          "acme", [map_order(validate_order(o)) for o in raw])
    with server.client(server.admin_token()) as client:
        created = client.post("/accounts", json={
            "kind": "service", "name": "label printer",
            "grants": [{"role": "pii-reader", "tenant": "acme"}]}).json()
    with server.client(officer) as client:
        assert client.post(f"/approvals/{created['id']}/approve").status_code == 200
    with server.client(created["api_key"], **{"X-Access-Purpose": "fulfillment"}) as client:
        revealed = client.get(f"/tenants/acme/orders/{raw[0]['AmazonOrderId']}")
        assert revealed.status_code == 200
        assert client.get("/session").status_code == 401  # at once: no wait for the detector
    assert server.runtime.audit.subscribers.wait_idle(10)  # (the alert is the detector's)
    with server.client(officer) as client:
        critical = [a for a in client.get("/alerts").json()["alerts"]
                    if a["rule"] == "canary-access"]
        assert [(a["principal_id"], a["severity"]) for a in critical] == [
            (created["id"], "critical")]
        assert client.post(f"/accounts/{created['id']}/enable").status_code == 200
    with server.client(created["api_key"]) as client:
        assert client.get("/session").status_code == 200


def test_the_notification_outbox_is_listed_and_a_dead_letter_retried(
        server: Server, officer: str, tmp_path: Path) -> None:
    """Without channels configured there are no notifications: the list is empty, an
    unknown one 404, a bad id 422; the CLI says the same (the outbox's own behaviour is
    tests/notifications/test_dead_letters.py)."""
    with server.client(officer) as client:
        listed = client.get("/alerts/notifications")
        assert listed.status_code == 200 and listed.json() == {"notifications": []}
        assert client.get("/alerts/notifications",
                          params={"status": "delivered"}).status_code == 200
        assert client.get("/alerts/notifications",
                          params={"status": "lost"}).status_code == 422
        missing = client.post("/alerts/notifications/ntf_000000000000000000000000/retry")
        assert missing.status_code == 404
        assert client.post("/alerts/notifications/nope/retry").status_code == 422
    cli = Cli(tmp_path)
    assert cli.run("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                   "--api-key-stdin", stdin=officer + "\n").code == 0
    assert cli.invoke("alerts", "notifications", "--json").json() == []
    refused = cli.invoke("alerts", "retry-notification", "ntf_000000000000000000000000")
    assert refused.code == 1 and "not_found" in refused.stderr
