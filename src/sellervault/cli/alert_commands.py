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
    "or another officer, `ack` it, `close` it; `notifications` lists their webhook and "
    "e-mail notifications (the dead letters by default), `retry-notification` sends a dead "
    "letter again."))

AlertId = Annotated[str, typer.Argument(help="The alert id (alr_...).")]


@alerts_app.command("list")
def alerts_list(
    status: Annotated[str | None, typer.Option(
        help="open, acknowledged or closed (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """The newest alerts first: id, time, severity, rule, subject (an account, an address,
    a deletion request), status, assignee."""
    params = {"status": status} if status else {}
    listed = call("GET", "/alerts", params=params)["alerts"]
    if as_json:
        print(json.dumps(listed))
        return
    for a in listed:
        console.print(escape(
            f"{a['id']}  {a['created_at']}  {a['severity']:8} {a['rule']:20} "
            f"{a['subject']}  {a['status']}"
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


@alerts_app.command("notifications")
def alerts_notifications(
    status: Annotated[str, typer.Option(
        help="dead (the dead letters), pending or delivered.")] = "dead",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Alert notifications by status, newest first: id, alert, channel, attempts, the last
    failure's reason code."""
    listed = call("GET", "/alerts/notifications", params={"status": status})["notifications"]
    if as_json:
        print(json.dumps(listed))
        return
    for n in listed:
        reason = f"{n['last_reason']}" + (f" ({n['last_code']})" if n["last_code"] else "")
        console.print(escape(f"{n['id']}  {n['created_at']}  {n['alert_id']}  "
                             f"{n['channel']:8} {n['status']:9} {n['attempts']} attempt(s)  "
                             f"{reason if n['last_reason'] else ''}"), highlight=False)


@alerts_app.command("retry-notification")
def alerts_retry_notification(
    notification_id: Annotated[str, typer.Argument(help="The notification id (ntf_...).")],
) -> None:
    """Send a dead letter again (due now; the alert-notifications job sends it)."""
    letter = call("POST", f"/alerts/notifications/{notification_id}/retry")
    console.print(escape(f"Notification {letter['id']} is {letter['status']} again."),
                  highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
