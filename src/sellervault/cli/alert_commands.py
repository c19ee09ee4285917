"""Client commands for alerts (role ``security-officer``): list what the detectors raised,
and assign, acknowledge and close it. Each is one request, recorded as a security event."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from sellervault.cli.common import call, console

alerts_app = typer.Typer(no_args_is_help=True, help=(
    "Alerts the detectors raised (security officer): unauthorized calls, unusual request "
    "rates and retrieval volumes, canaries touched, locked accounts and lockout storms, a "
    "success after many failures, configuration changes, a failed verification, a log "
    "review due; one per rule, subject and window. `list` them, `assign` one to yourself "
    "or another officer, `ack` it, `close` it."))

AlertId = Annotated[str, typer.Argument(help="The alert id (alr_...).")]


@alerts_app.command("list")
def alerts_list(
    status: Annotated[str | None, typer.Option(
        help="open, acknowledged or closed (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """The newest alerts first: id, rule, severity, account, time, status, assignee."""
    params = {"status": status} if status else {}
    listed = call("GET", "/alerts", params=params)["alerts"]
    if as_json:
        print(json.dumps(listed))
        return
    for a in listed:
        console.print(escape(
            f"{a['id']}  {a['created_at']}  {a['severity']:8} {a['rule']:20} "
            f"{a['principal_id'] or '(an address)'}  {a['status']}"
            f"{'  -> ' + a['assigned_to'] if a['assigned_to'] else ''}"), highlight=False)


def _show(alert: dict[str, Any]) -> None:
    assignee = f", assigned to {alert['assigned_to']}" if alert["assigned_to"] else ""
    console.print(escape(f"Alert {alert['id']} is {alert['status']}{assignee}."),
                  highlight=False)


@alerts_app.command("ack")
def alerts_ack(alert_id: AlertId) -> None:
    """Say someone is looking at an open alert."""
    _show(call("POST", f"/alerts/{alert_id}/acknowledge"))


@alerts_app.command("close")
def alerts_close(alert_id: AlertId) -> None:
    """Close an open or acknowledged alert: dealt with."""
    _show(call("POST", f"/alerts/{alert_id}/close"))


@alerts_app.command("assign")
def alerts_assign(
    alert_id: AlertId,
    to: Annotated[str | None, typer.Option(help="An account id (default: yourself).")] = None,
) -> None:
    """Name who works on an alert."""
    _show(call("POST", f"/alerts/{alert_id}/assign", json={"assignee": to}))


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
