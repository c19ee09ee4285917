"""Commands that talk to a running server over HTTPS: login, accounts, orders, import."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from sellervault.cli import (
    alert_commands,
    deletion_commands,
    lifecycle_commands,
    subject_commands,
)
from sellervault.cli.client import (
    DEFAULT_SERVER,
    ClientError,
    Credentials,
    checked,
    open_client,
    session_client,
)
from sellervault.cli.common import call, console, err, fail, parse_grant

accounts_app = typer.Typer(no_args_is_help=True, help="People and service accounts (admin).")
enrol_app = typer.Typer(no_args_is_help=True, help=(
    "Make the account an administrator created for you your own: `start` gives the secret "
    "for your authenticator app, `finish` sets your password and proves the authenticator, "
    "and prints ten single-use recovery codes. The enrolment token works once, for 72 "
    "hours; it is read from standard input, never from the command line."))
password_app = typer.Typer(no_args_is_help=True, help=(
    "Your own password: `change` replaces it (current password, a code of your "
    "authenticator or a recovery code). A password is changed at most once a day, unless it "
    "expired (after 365 days) or must be changed; the new one is 12 to 128 characters, not "
    "common, not containing your name or email, and none of your last 10. Every session of "
    "the account ends with the change."))
orders_app = typer.Typer(no_args_is_help=True, help="Orders of a tenant.")
approvals_app = typer.Typer(
    no_args_is_help=True,
    help="Services that may read PII, waiting for a second person (security officer).")

killswitch_app = typer.Typer(no_args_is_help=True, help=(
    "Kill switches (operator): stop every PII reveal and search, one tenant, or one account, "
    "on every server process within half a second, until cleared."))

DEFAULT_BATCH = 500


def _stdin_line(what: str) -> str:
    line = sys.stdin.readline()
    if not line:
        raise fail(f"expected the {what} on standard input")
    return line.rstrip("\r\n")


def login(
    server: Annotated[str, typer.Option(help="The server's https:// address.")] = DEFAULT_SERVER,
    ca_cert: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, readable=True,
        help="CA certificate to trust (the server's self-signed certificate).")] = None,
    email: Annotated[str | None, typer.Option(help="Your own email (people).")] = None,
    totp: Annotated[str | None, typer.Option(help="The current code of your authenticator.")]
    = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from standard input.")] = False,
    api_key_stdin: Annotated[bool, typer.Option(
        "--api-key-stdin", help="Service accounts: read the API key from standard input.")]
    = False,
) -> None:
    """Sign in (password and TOTP, or a service's API key) and keep the token owner-only."""
    ca = str(ca_cert.resolve()) if ca_cert else None  # later commands may run elsewhere
    try:
        if api_key_stdin:
            token = _stdin_line("API key")
        else:
            if email is None:
                raise fail("give --email (or --api-key-stdin for a service account)")
            password = (_stdin_line("password") if password_stdin
                        else typer.prompt("Password", hide_input=True))
            code = totp or typer.prompt("TOTP code")
            with open_client(server, ca) as client:
                token = checked(client.post("/session", json={
                    "email": email, "password": password, "totp": code}))["token"]
        with open_client(server, ca, token) as client:
            checked(client.get("/session"))  # the token works, or login fails
        path = Credentials(server=server, ca_cert=ca, token=token).save()
    except (ClientError, httpx.HTTPError) as exc:
        raise fail(str(exc)) from None
    console.print(f"Logged in to {server}; token stored in {path} (owner-only).")


@accounts_app.command("create")
def accounts_create(
    kind: Annotated[str, typer.Option(help="person or service.")],
    name: Annotated[str, typer.Option(help="The person's full name, or the service's name.")],
    email: Annotated[str | None, typer.Option(help="A person's own email.")] = None,
    grant: Annotated[list[str] | None, typer.Option(
        help="ROLE:TENANT (repeatable); TENANT is a tenant id or *.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Create a person (an enrolment token to hand over: they choose their own password and
    authenticator with `sellervault enrol`) or a service (API key; pending a security
    officer's approval when it holds pii-reader)."""
    body: dict[str, Any] = {"kind": kind, "name": name,
                            "grants": [parse_grant(g) for g in grant or []]}
    if email is not None:
        body["email"] = email
    created = call("POST", "/accounts", json=body)
    if as_json:
        print(json.dumps(created))
        return
    console.print(f"Created {kind} account {created['id']}. Shown once, hand over securely:")
    for key in ("enrolment_token", "expires_at", "api_key"):
        if key in created:
            console.print(f"  {key}: {created[key]}")
    if created.get("status") == "pending":
        console.print("It holds pii-reader: its key works once a security officer (not you) "
                      f"runs `sellervault approvals approve {created['id']}`.")


@approvals_app.command("list")
def approvals_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Accounts waiting for approval, with the grants they would get."""
    pending = call("GET", "/approvals")["approvals"]
    if as_json:
        print(json.dumps(pending))
        return
    if not pending:
        console.print("Nothing is waiting for approval.")
    for item in pending:
        grants = ", ".join(f"{g['role']}:{g['tenant']}" for g in item["grants"])
        console.print(escape(f"{item['account_id']}  {item['kind']}  {item['name']}  "
                             f"[{grants}]  created by {item['created_by']} at "
                             f"{item['created_at']}"), highlight=False)


def _decide(account_id: str, decision: str) -> None:
    result = call("POST", f"/approvals/{account_id}/{decision}")
    console.print(f"Account {result['account_id']} is now {result['status']}.")


@approvals_app.command("approve")
def approvals_approve(
    account_id: Annotated[str, typer.Argument(help="The account id (svc_...).")],
) -> None:
    """Approve a pending account: its API key works from now on."""
    _decide(account_id, "approve")


@approvals_app.command("reject")
def approvals_reject(
    account_id: Annotated[str, typer.Argument(help="The account id (svc_...).")],
) -> None:
    """Reject a pending account: its API key never works."""
    _decide(account_id, "reject")


ServerOption = Annotated[str, typer.Option(help="The server's https:// address.")]
CaOption = Annotated[Path | None, typer.Option(
    exists=True, dir_okay=False, readable=True,
    help="CA certificate to trust (the server's self-signed certificate).")]


@enrol_app.command("start")
def enrol_start(server: ServerOption = DEFAULT_SERVER, ca_cert: CaOption = None) -> None:
    """Read the enrolment token from standard input; print the TOTP secret to add to your
    authenticator app (a new one each time: the last one shown counts)."""
    token = _stdin_line("enrolment token")
    try:
        with open_client(server, str(ca_cert) if ca_cert else None) as client:
            started = checked(client.post("/enrolment/start", json={"token": token}))
    except (ClientError, httpx.HTTPError) as exc:
        raise fail(str(exc)) from None
    console.print(f"TOTP secret (add it to your authenticator now): {started['totp_secret']}")
    console.print("Then: sellervault enrol finish --totp CODE (token and new password on "
                  "standard input, one per line).")


@enrol_app.command("finish")
def enrol_finish(
    totp: Annotated[str, typer.Option(help="The current code of your authenticator.")],
    server: ServerOption = DEFAULT_SERVER, ca_cert: CaOption = None,
) -> None:
    """Read the enrolment token and your new password from standard input (one line each);
    set the password, prove the authenticator, print your recovery codes (shown once)."""
    token = _stdin_line("enrolment token")
    password = _stdin_line("new password")
    try:
        with open_client(server, str(ca_cert) if ca_cert else None) as client:
            finished = checked(client.post("/enrolment/finish", json={
                "token": token, "new_password": password, "totp": totp}))
    except (ClientError, httpx.HTTPError) as exc:
        raise fail(str(exc)) from None
    console.print("Enrolled. Recovery codes (each works once in place of a code; keep them "
                  "offline):")
    for code in finished["recovery_codes"]:
        console.print(f"  {code}")


@password_app.command("change")
def password_change(
    email: Annotated[str, typer.Option(help="Your own email.")],
    totp: Annotated[str, typer.Option(
        help="The current code of your authenticator, or one of your recovery codes.")],
    server: ServerOption = DEFAULT_SERVER, ca_cert: CaOption = None,
) -> None:
    """Read your current password, then the new one, from standard input (one line each;
    never from the command line, where other users and the shell history see it)."""
    current = _stdin_line("current password")
    new = _stdin_line("new password")
    try:
        with open_client(server, str(ca_cert) if ca_cert else None) as client:
            checked(client.post("/password", json={
                "email": email, "current_password": current, "totp": totp,
                "new_password": new}))
    except (ClientError, httpx.HTTPError) as exc:
        raise fail(str(exc)) from None
    console.print("Password changed; every session of the account has ended: log in again.")


def _set_status(account_id: str, change: str) -> None:
    result = call("POST", f"/accounts/{account_id}/{change}")
    console.print(f"Account {result['id']} is now {result['status']}.")


@accounts_app.command("disable")
def accounts_disable(
    account_id: Annotated[str, typer.Argument(help="The account id (acc_... or svc_...).")],
) -> None:
    """Disable an account now: its sessions end, its credentials are refused on every
    server process. Not your own."""
    _set_status(account_id, "disable")


@accounts_app.command("enable")
def accounts_enable(
    account_id: Annotated[str, typer.Argument(help="The account id (acc_... or svc_...).")],
) -> None:
    """Re-enable a disabled account, also one disabled after ten failed sign-ins (its
    failure count and lock are cleared)."""
    _set_status(account_id, "enable")


@accounts_app.command("reenrol")
def accounts_reenrol(
    account_id: Annotated[str, typer.Argument(help="The person's account id (acc_...).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """For a person who lost their authenticator: a new enrolment token to hand over (72
    hours, once). Their sessions, recovery codes and earlier tokens end now; they cannot
    sign in until they enrol again (`sellervault enrol`) with a new authenticator and a
    password of their own. A disabled account is re-enabled first. Not your own."""
    result = call("POST", f"/accounts/{account_id}/enrolment")
    if as_json:
        print(json.dumps(result))
        return
    console.print(f"Account {result['id']} is enrolling again. Enrolment token (shown once; "
                  f"hand it to the person, valid until {result['expires_at']}): "
                  f"{result['enrolment_token']}")


def logout() -> None:
    """Sign out: end the session saved by `sellervault login` on the server and forget it
    here. (A service's API key is revoked by an administrator instead.)"""
    try:
        credentials = Credentials.load()
        with session_client() as client:
            checked(client.delete("/session"))
    except (ClientError, httpx.HTTPError) as exc:
        raise fail(str(exc)) from None
    credentials.forget()
    console.print("Signed out.")


Scope = Annotated[str, typer.Argument(
    help="reveals (every PII reveal and search), tenant, or account.")]
Subject = Annotated[str | None, typer.Argument(
    help="The tenant id or account id (none for reveals).")]


def _switch(change: str, scope: str, subject: str | None) -> None:
    call("POST", f"/killswitches/{change}", json={"scope": scope, "subject": subject})
    console.print(escape(f"Kill switch {scope}{' ' + subject if subject else ''} "
                         f"{'set' if change == 'set' else 'cleared'}."), highlight=False)


@killswitch_app.command("set")
def killswitch_set(scope: Scope, subject: Subject = None) -> None:
    """Stop it now: requests it covers are refused (403 kill_switch) and logged."""
    _switch("set", scope, subject)


@killswitch_app.command("clear")
def killswitch_clear(scope: Scope, subject: Subject = None) -> None:
    """Let it run again."""
    _switch("clear", scope, subject)


@killswitch_app.command("list")
def killswitch_list() -> None:
    """The switches set: scope, subject, who set it and when."""
    switches = call("GET", "/killswitches")["killswitches"]
    if not switches:
        console.print("No kill switch is set.")
    for item in switches:
        console.print(escape(f"{item['scope']}  {item['subject']}  set by {item['set_by']} "
                             f"at {item['set_at']}"), highlight=False)


@orders_app.command("get")
def orders_get(
    tenant: Annotated[str, typer.Argument(help="The tenant id.")],
    order_id: Annotated[str, typer.Argument(help="The AmazonOrderId.")],
    purpose: Annotated[str | None, typer.Option(
        help="Reveal PII for this purpose: fulfillment, tax-remittance, tax-invoicing, "
             "legal-obligation (needs the pii-reader role).")] = None,
) -> None:
    """Show an order, PII masked unless a permitted purpose is given."""
    headers = {"X-Access-Purpose": purpose} if purpose else {}
    order = call("GET", f"/tenants/{tenant}/orders/{order_id}", headers=headers)
    print(json.dumps(order, indent=2))


def _batches(path: Path, size: int, progress: Progress,
             task: Any) -> Iterator[tuple[list[int], list[Any]]]:
    """Stream a JSON-lines file in batches of (line numbers, orders): memory stays bounded
    by one batch."""
    batch: list[Any] = []
    numbers: list[int] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            progress.update(task, advance=len(line))
            if not line.strip():
                continue
            try:
                batch.append(json.loads(line))
            except ValueError:
                raise ClientError(f"line {number} of {path.name} is not valid JSON") from None
            numbers.append(number)
            if len(batch) >= size:
                yield numbers, batch
                batch, numbers = [], []
    if batch:
        yield numbers, batch


_ORDER_INDEX = re.compile(r"\borders\.(\d+)\b")


def _where(error: ClientError, numbers: list[int], path: Path) -> str:
    """The file line a refused batch points at: the server names the order's index in the
    batch (``body.orders.6.PurchaseDate``); without one, the batch's range of lines."""
    found = _ORDER_INDEX.search(str(error))
    if found and int(found.group(1)) < len(numbers):
        return f"line {numbers[int(found.group(1))]} of {path.name}"
    return f"lines {numbers[0]}-{numbers[-1]} of {path.name}"


def import_orders(
    file: Annotated[Path, typer.Argument(help="A JSON-lines file, one SP-API Order per line.",
                                         exists=True, dir_okay=False, readable=True)],
    tenant: Annotated[str, typer.Option(help="The tenant the orders belong to.")],
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="Orders per request.")]
    = DEFAULT_BATCH,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Stream orders to the server in all-or-nothing batches; re-running is safe.

    A re-sent order updates, never duplicates; one deleted on request is withheld (not
    stored again)."""
    total = withheld = 0
    columns = (TextColumn("[bold]importing"), BarColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    try:
        with session_client() as client, Progress(*columns, console=err,
                                                  disable=quiet) as progress:
            task = progress.add_task("import", total=file.stat().st_size)
            for numbers, batch in _batches(file, batch_size, progress, task):
                try:
                    result = checked(client.post(f"/tenants/{tenant}/orders",
                                                 json={"orders": batch}))
                except ClientError as exc:
                    raise ClientError(f"{_where(exc, numbers, file)}: {exc}") from None
                total += int(result["ingested"])
                withheld += int(result.get("withheld", 0))
    except (ClientError, httpx.HTTPError) as exc:
        raise fail(f"{exc} (after {total} orders were stored; re-running is safe)") from None
    console.print(f"Imported {total} orders into tenant {tenant}."
                  + (f" {withheld} withheld: deleted on request, not stored again."
                     if withheld else ""))


def register(app: typer.Typer) -> None:
    app.command()(login)
    app.command()(logout)
    app.command("import")(import_orders)
    lifecycle_commands.register(app, accounts_app)
    alert_commands.register(app)
    deletion_commands.register(app)
    subject_commands.register(app)
    app.add_typer(accounts_app, name="accounts")
    app.add_typer(enrol_app, name="enrol")
    app.add_typer(password_app, name="password")
    app.add_typer(orders_app, name="orders")
    app.add_typer(approvals_app, name="approvals")
    app.add_typer(killswitch_app, name="killswitch")
