"""The alerts API through a real HTTPS server whose detectors are attached: ten forbidden
requests by one service raise one ``unauthorized-calls`` alert naming it, which a security
officer lists, assigns, acknowledges and closes; the shape holds ids only, never PII; bad
ids are 422, unknown ones 404, a change that does not apply 409. A canary revealed locks
the reader (its next request 401) until a security officer re-enables it. A flood of newer
alerts hides no critical one (filters, and pages to the end); an alert is assigned only to
an active security officer, never to the account it is about. (The CLI's alert commands:
tests/cli/test_alert_commands.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sellervault.audit.auditor import Auditor
from sellervault.audit.events import SYSTEM_ACTOR
from sellervault.monitoring import alerts
from sellervault.records import service as records
from sellervault.records.spapi import map_order, validate_order
from sellervault.records.synthetic import synthetic_orders
from tests.cli.helpers import Cli
from tests.monitoring.helpers import canary_alert_behind
from tests.support import Server


@pytest.fixture(scope="module")
def officer(server: Server) -> str:
    return server.create_officer(server.admin_token(), "alert desk")


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


OFFICER_GRANT = [{"role": "security-officer", "tenant": "*"}]
WINDOW = "2026-12-05T10:00:00.000000Z"


def _account_id(server: Server, name: str, grants: list[dict[str, str]]) -> str:
    """A new account holding ``grants``: a person for security-officer (persons only), else
    a service."""
    if grants == OFFICER_GRANT:
        key = server.create_officer(server.admin_token(), name)
    else:
        key = server.create_service(server.admin_token(), name, grants)
    with server.client(key) as client:
        account_id: str = client.get("/session").json()["account_id"]
    return account_id


def _all_pages(client: Any, **params: str) -> list[dict[str, Any]]:
    """Every alert matching ``params``, newest first, following ``next_cursor``."""
    listed: list[dict[str, Any]] = []
    query = {**params, "limit": "1000"}
    while True:
        page = client.get("/alerts", params=query)
        assert page.status_code == 200, page.text
        listed += page.json()["alerts"]
        if page.json()["next_cursor"] is None:
            return listed
        query["before"] = page.json()["next_cursor"]


def test_a_flood_of_newer_alerts_hides_no_critical_alert(server: Server, officer: str) -> None:
    """The reported attack: 1,001 alerts newer than a canary's (what ten denied calls from
    each of as many IPv6 addresses raise) filled the largest page, and the canary's alert
    was out of reach. ``severity=critical`` and ``rule=canary-access`` find it; paging with
    ``before=next_cursor`` reaches it, each alert once. Bad filters and cursors are 422, a
    cursor that is no alert 404."""
    canary = canary_alert_behind(server.runtime, 1001, WINDOW, "2001:db8:f100")
    with server.client(officer) as client:
        newest = client.get("/alerts", params={"status": "open", "limit": 1000})
        assert newest.status_code == 200 and set(newest.json()) == {"alerts", "next_cursor"}
        assert canary not in [a["id"] for a in newest.json()["alerts"]]
        assert newest.json()["next_cursor"] == newest.json()["alerts"][-1]["id"]
        for params in ({"severity": "critical"},
                       {"status": "open", "rule": "canary-access", "severity": "critical"}):
            found = client.get("/alerts", params=params).json()["alerts"]
            assert canary in [a["id"] for a in found]
            assert {a["severity"] for a in found} == {"critical"}
        paged = [a["id"] for a in _all_pages(client, status="open")]
        assert canary in paged and len(paged) == len(set(paged)) >= 1002
        for bad in ({"severity": "urgent"}, {"rule": "Canary Access"}, {"before": "alr_1"},
                    {"limit": "1001"}):
            assert client.get("/alerts", params=bad).status_code == 422, bad
        unknown = client.get("/alerts", params={"before": "alr_" + "0" * 24})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


def test_an_alert_is_assigned_only_to_an_active_security_officer_never_its_subject(
        server: Server, officer: str) -> None:
    """The reported abuse: officer B assigned the alert about officer A to A, or to an
    account that does not exist. Now: to the subject 409 ``own_alert``; to no account, an
    active non-officer or a disabled officer 422 ``assignee_not_officer``; the alert unchanged,
    no answer naming the id sent. Another active officer: 200."""
    caught = _account_id(server, "caught desk", OFFICER_GRANT)
    alert_id = alerts.raise_alert(server.runtime, "canary-access", "critical", caught, caught,
                                  WINDOW)
    analyst = _account_id(server, "report desk", [{"role": "analyst", "tenant": "acme"}])
    former = _account_id(server, "former desk", OFFICER_GRANT)
    with server.client(server.admin_token()) as client:
        assert client.post(f"/accounts/{former}/disable").status_code == 200
    colleague = _account_id(server, "colleague desk", OFFICER_GRANT)
    with server.client(officer) as client:
        subject = client.post(f"/alerts/{alert_id}/assign", json={"assignee": caught})
        assert subject.status_code == 409 and subject.json()["error"]["code"] == "own_alert"
        assert caught not in subject.text
        for nobody in ("acc_" + "0" * 24, analyst, former):
            refused = client.post(f"/alerts/{alert_id}/assign", json={"assignee": nobody})
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["code"] == "assignee_not_officer"
            assert nobody not in refused.text
        [alert] = [a for a in client.get("/alerts", params={"rule": "canary-access"})
                   .json()["alerts"] if a["id"] == alert_id]
        assert (alert["status"], alert["assigned_to"]) == ("open", None)
        assigned = client.post(f"/alerts/{alert_id}/assign", json={"assignee": colleague})
        assert assigned.status_code == 200 and assigned.json()["assigned_to"] == colleague
