"""Client commands for alerts (role ``security-officer``): list what the detectors raised,
and assign, acknowledge and close it. Each is one request, recorded as a security event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.markup import escape

from sellervault.cli.common import call, console, err

alerts_app = typer.Typer(no_args_is_help=True, help=(
    "Alerts the detectors raised (security officer): unauthorized calls, unusual request "
    "rates and retrieval volumes, canaries touched, locked accounts and lockout storms, a "
    "success after many failures, configuration changes, a failed verification, a log "
    "review due; one per rule, subject and window. `list` them, `assign` one to yourself "
    "or another officer, `ack` it, `close` it; `notifications` lists their webhook and "
    "e-mail notifications (the dead letters by default), `retry-notification` sends a dead "
    "letter again."))

AlertId = Annotated[str, typer.Argument(help="The alert id (alr_...).")]


MAX_PAGE = 1000
"""The API's largest page."""


def _pages(params: dict[str, str], limit: int, every: bool) -> Iterator[list[dict[str, Any]]]:
    """The pages of the listing, newest first: one, or with ``every`` each to the last
    (following ``next_cursor``). Without ``every``, where the next page starts is said on
    standard error, so that no alert lies out of reach behind newer ones."""
    params = {**params, "limit": str(limit)}
    while True:
        page = call("GET", "/alerts", params=params)
        yield page["alerts"]
        cursor = page.get("next_cursor")
        if cursor is None:
            return
        if not every:
            err.print(escape(f"More alerts: add --before {cursor} (or --all)."),
                      highlight=False)
            return
        params["before"] = cursor


@alerts_app.command("list")
def alerts_list(
    status: Annotated[str | None, typer.Option(
        help="open, acknowledged or closed (default: all).")] = None,
    severity: Annotated[str | None, typer.Option(
        help="low, medium, high or critical (default: all).")] = None,
    rule: Annotated[str | None, typer.Option(
        help="One rule's alerts, e.g. canary-access (default: all).")] = None,
    before: Annotated[str | None, typer.Option(
        help="Start after this alert (alr_...): the next page, as the last one said.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE, help="Alerts per page (one "
                                                                  "request each).")] = 100,
    every: Annotated[bool, typer.Option("--all", help="Every matching alert, page after "
                                                      "page to the oldest.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """The newest alerts first: id, time, severity, rule, subject (an account, an address,
    a deletion request), status, assignee. A page at a time (where the next starts is said
    on standard error), or --all of them; filter with --severity and --rule, so that a
    flood of newer alerts hides no critical one."""
    params = {name: value for name, value in (("status", status), ("severity", severity),
                                              ("rule", rule), ("before", before)) if value}
    listed: list[dict[str, Any]] = []
    for page in _pages(params, limit, every):
        if as_json:
            listed.extend(page)
            continue
        for a in page:
            console.print(escape(
                f"{a['id']}  {a['created_at']}  {a['severity']:8} {a['rule']:20} "
                f"{a['subject']}  {a['status']}"
                f"{'  -> ' + a['assigned_to'] if a['assigned_to'] else ''}"), highlight=False)
    if as_json:
        print(json.dumps(listed))


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
    to: Annotated[str | None, typer.Option(
        help="An active security officer's account id, not the alert's own account "
             "(default: yourself).")] = None,
) -> None:
    """Name who works on an alert: a security officer, never the account it is about."""
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
