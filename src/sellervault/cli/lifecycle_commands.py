"""Client commands for what happens to accounts after they are made (role ``admin``): list
and show them, offboard a leaver, set an end date or networks, add and revoke grants,
rotate and revoke a service's API keys. Each is one request to the server, which records it
as a security event naming you and the account."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from sellervault.cli.common import call, console, fail, parse_grant

grants_app = typer.Typer(no_args_is_help=True, help=(
    "Add or revoke one grant of an account (admin): ROLE:TENANT, TENANT a tenant id or * "
    "(service-wide roles: admin, operator, security-officer, auditor, on * only). A revoked "
    "grant stops at the next request on every server process."))
api_keys_app = typer.Typer(no_args_is_help=True, help=(
    "A service's API keys (admin): rotate (a new key, shown once; the old ones keep working "
    "for the overlap you choose, then stop) and revoke (one key, now). Keys expire within "
    "365 days; from 30 days before, every response to the key carries "
    "X-SellerVault-Key-Expires."))

AccountId = Annotated[str, typer.Argument(help="The account id (acc_... or svc_...).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _grants_text(grants: list[dict[str, str]]) -> str:
    return ", ".join(f"{g['role']}:{g['tenant']}" for g in grants) or "(none)"


def accounts_list(as_json: AsJson = False) -> None:
    """Every account: id, kind, status, end date, last use and grants."""
    listing = call("GET", "/accounts")["accounts"]
    if as_json:
        print(json.dumps(listing))
        return
    for a in listing:
        console.print(escape(
            f"{a['id']}  {a['kind']:7}  {a['status']:9}  last used {a['last_used_at'] or '-'}"
            f"  ends {a.get('ends_at') or '-'}  {_grants_text(a['grants'])}  {a['name']}"),
            highlight=False)


def accounts_show(account_id: AccountId, as_json: AsJson = False) -> None:
    """One account: status, end date, networks, grants, and its API keys (ids and dates,
    never the keys)."""
    detail = call("GET", f"/accounts/{account_id}")
    if as_json:
        print(json.dumps(detail))
        return
    lines = [f"{detail['id']} ({detail['kind']}) {detail['name']}",
             f"  status:    {detail['status']}",
             f"  created:   {detail['created_at']}",
             f"  last used: {detail['last_used_at'] or '-'}",
             f"  ends:      {detail['ends_at'] or '-'}",
             f"  networks:  {', '.join(detail['networks']) or '(the deployment allowlist)'}",
             f"  grants:    {_grants_text(detail['grants'])}"]
    lines += [f"  api key {k['key_id']}: expires {k['expires_at']}"
              f"{', revoked ' + k['revoked_at'] if k['revoked_at'] else ''}"
              for k in detail["api_keys"]]
    console.print(escape("\n".join(lines)), highlight=False)


def accounts_offboard(account_id: AccountId) -> None:
    """A leaver, now: the account is disabled with an end date of now; every session, API
    key, enrolment token and recovery code ends and every grant is removed, on every server
    process. Not your own, nor the last active administrator."""
    done = call("POST", f"/accounts/{account_id}/offboard")
    console.print(f"Account {done['id']} offboarded: {done['sessions_ended']} session(s) "
                  f"ended, {done['api_keys_revoked']} API key(s) revoked, "
                  f"{done['grants_removed']} grant(s) removed.")


def accounts_end_date(
    account_id: AccountId,
    ends_at: Annotated[str | None, typer.Argument(
        help="When access stops: an ISO 8601 time with its zone, e.g. "
             "2027-03-31T18:00:00+00:00. Leave out with --clear.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the end date.")] = False,
) -> None:
    """Set the moment an account's access stops (a contract's end, a leaver's last day):
    from then on its credentials are refused, and the account-end-dates job disables it."""
    if (ends_at is None) == (not clear):
        raise fail("give either an end time or --clear")
    result = call("PUT", f"/accounts/{account_id}/end-date", json={"ends_at": ends_at})
    console.print(f"Account {result['id']} ends {result['ends_at'] or 'never'}.")


def accounts_networks(
    account_id: AccountId,
    network: Annotated[list[str] | None, typer.Argument(
        help="CIDRs the account may be used from (e.g. 203.0.113.0/24); none lifts the "
             "restriction.")] = None,
) -> None:
    """Restrict an account to networks of its own, inside the deployment's allowlist: a
    sign-in from elsewhere fails like a wrong password, and its sessions and API keys are
    refused there."""
    result = call("PUT", f"/accounts/{account_id}/networks", json={"networks": network or []})
    console.print(escape(f"Account {result['id']} may be used from: "
                         f"{', '.join(result['networks']) or 'the deployment allowlist'}."),
                  highlight=False)


@grants_app.command("add")
def grants_add(
    account_id: AccountId,
    grant: Annotated[str, typer.Argument(help="ROLE:TENANT, e.g. analyst:acme.")],
) -> None:
    """Grant a role on a tenant. Refused when the account may not hold it beside its other
    grants (pii-reader never with admin, operator, security-officer or auditor; never on *),
    and pii-reader for an existing service (create one: it needs a second person's
    approval)."""
    added = call("POST", f"/accounts/{account_id}/grants", json=parse_grant(grant))
    console.print(escape(f"Granted {added['role']}:{added['tenant']} to {account_id}."),
                  highlight=False)


@grants_app.command("revoke")
def grants_revoke(
    account_id: AccountId,
    grant: Annotated[str, typer.Argument(help="ROLE:TENANT, as held.")],
) -> None:
    """Take a grant away; admin is never taken from the last active administrator."""
    revoked = call("POST", f"/accounts/{account_id}/grants/revoke", json=parse_grant(grant))
    console.print(escape(f"Revoked {revoked['role']}:{revoked['tenant']} from {account_id}."),
                  highlight=False)


@api_keys_app.command("rotate")
def api_keys_rotate(
    account_id: Annotated[str, typer.Argument(help="The service's account id (svc_...).")],
    overlap_hours: Annotated[int, typer.Option(
        min=0, max=720, help="Hours the current keys keep working beside the new one (0: "
                             "they stop now).")] = 24,
    as_json: AsJson = False,
) -> None:
    """A new API key for a service (shown once: hand it over securely)."""
    issued = call("POST", f"/accounts/{account_id}/api-keys",
                  json={"overlap_hours": overlap_hours})
    if as_json:
        print(json.dumps(issued))
        return
    console.print(f"New API key {issued['key_id']} (expires {issued['expires_at']}); the "
                  f"service's other keys stop within {overlap_hours} hour(s). Shown once:\n"
                  f"  {issued['api_key']}")


@api_keys_app.command("revoke")
def api_keys_revoke(
    account_id: Annotated[str, typer.Argument(help="The service's account id (svc_...).")],
    key_id: Annotated[str, typer.Argument(help="The key's id (accounts show lists them).")],
) -> None:
    """End one API key now, on every server process."""
    call("POST", f"/accounts/{account_id}/api-keys/{key_id}/revoke")
    console.print(f"API key {key_id} revoked.")


def register(app: typer.Typer, accounts_app: typer.Typer) -> None:
    accounts_app.command("list")(accounts_list)
    accounts_app.command("show")(accounts_show)
    accounts_app.command("offboard")(accounts_offboard)
    accounts_app.command("end-date")(accounts_end_date)
    accounts_app.command("networks")(accounts_networks)
    app.add_typer(grants_app, name="grants")
    app.add_typer(api_keys_app, name="api-keys")
