"""The alerts API through a real HTTPS server whose detectors are attached: ten forbidden
requests by one service raise one ``unauthorized-calls`` alert naming it, which a security
officer lists, assigns, acknowledges and closes; the shape holds ids only, never PII; bad
ids are 422, unknown ones 404, a change that does not apply 409."""

from __future__ import annotations

from pathlib import Path

import pytest

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
        assert set(alert) == {"id", "rule", "severity", "principal_id", "created_at",
                              "status", "assigned_to"}
        assert (alert["rule"], alert["severity"], alert["status"]) == (
            "unauthorized-calls", "high", "open")
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
