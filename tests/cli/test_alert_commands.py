"""The alert commands (cli/alert_commands.py) against a real TLS server: an officer lists
alerts a page at a time (where the next starts said on standard error), every page with
``--all``, or filtered by severity and rule, so that a flood of newer alerts hides no
critical one; closes one; and an assignment the server refuses exits 1 with its code."""

from __future__ import annotations

import pytest

from sellervault.monitoring import alerts
from tests.cli.helpers import Cli
from tests.monitoring.helpers import canary_alert_behind
from tests.support import Server

WINDOW = "2026-12-05T10:00:00.000000Z"


@pytest.fixture(scope="module")
def officer(server: Server) -> str:
    return server.create_officer(server.admin_token(), "alert desk")


@pytest.fixture(scope="module")
def cli(server: Server, officer: str, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    signed_in = Cli(tmp_path_factory.mktemp("alerts-cli"))
    logged_in = signed_in.run("login", "--server", server.base_url, "--ca-cert",
                              server.ca_file, "--api-key-stdin", stdin=officer + "\n")
    assert logged_in.code == 0, logged_in
    return signed_in


def test_the_cli_lists_and_closes_alerts(server: Server, cli: Cli) -> None:
    prober = server.create_service(server.admin_token(), "another prober",
                                   [{"role": "analyst", "tenant": "acme"}])
    with server.client(prober) as client:
        for _ in range(10):
            client.get("/accounts")
    assert server.runtime.audit.subscribers.wait_idle(10)
    listed = cli.invoke("alerts", "list", "--status", "open", "--json")
    assert listed.code == 0, listed
    alert_id = listed.json()[0]["id"]
    closed = cli.invoke("alerts", "close", alert_id)
    assert closed.code == 0 and f"Alert {alert_id} is closed." in closed.stdout
    again = cli.invoke("alerts", "close", alert_id)
    assert again.code == 1 and "alert_state" in again.stderr


def test_a_flood_of_newer_alerts_hides_no_critical_alert_from_the_cli(
        server: Server, cli: Cli) -> None:
    """A canary's alert behind 30 newer ones, listed 10 a page: the first page lacks it and
    says where the next starts; ``--before`` that goes on; ``--all`` reaches it, each alert
    once; ``--severity critical`` and ``--rule canary-access`` find it at once."""
    canary = canary_alert_behind(server.runtime, 30, WINDOW, "2001:db8:c11")
    first = cli.invoke("alerts", "list", "--status", "open", "--limit", "10", "--json")
    assert first.code == 0, first
    assert len(first.json()) == 10 and canary not in [a["id"] for a in first.json()]
    assert f"--before {first.json()[-1]['id']}" in first.stderr
    second = cli.invoke("alerts", "list", "--status", "open", "--limit", "10", "--before",
                        first.json()[-1]["id"], "--json")
    assert second.code == 0 and not {a["id"] for a in second.json()} & {
        a["id"] for a in first.json()}
    every = cli.invoke("alerts", "list", "--status", "open", "--limit", "10", "--all",
                       "--json")
    assert every.code == 0 and every.stderr == ""
    ids = [a["id"] for a in every.json()]
    assert canary in ids and len(ids) == len(set(ids)) >= 31
    assert ids[:20] == [a["id"] for a in first.json() + second.json()]
    critical = cli.invoke("alerts", "list", "--severity", "critical", "--json")
    assert canary in [a["id"] for a in critical.json()]
    shown = cli.invoke("alerts", "list", "--rule", "canary-access")
    assert shown.code == 0 and canary in shown.stdout and "critical" in shown.stdout
    bad = cli.invoke("alerts", "list", "--severity", "urgent")
    assert bad.code == 1 and "invalid_request" in bad.stderr


def test_an_assignment_the_server_refuses_exits_1_with_its_code(server: Server,
                                                                 cli: Cli) -> None:
    """To the account the alert is about: own_alert; to an account that is no officer:
    assignee_not_officer. The alert stays unassigned."""
    caught_key = server.create_officer(server.admin_token(), "caught desk")
    with server.client(caught_key) as client:
        caught = client.get("/session").json()["account_id"]
    alert_id = alerts.raise_alert(server.runtime, "canary-access", "critical", caught, caught,
                                  WINDOW)
    assert alert_id is not None
    own = cli.invoke("alerts", "assign", alert_id, "--to", caught)
    assert own.code == 1 and "own_alert" in own.stderr
    nobody = cli.invoke("alerts", "assign", alert_id, "--to", "acc_" + "0" * 24)
    assert nobody.code == 1 and "assignee_not_officer" in nobody.stderr
    assert alerts.get_alert(server.runtime, alert_id).assigned_to is None
