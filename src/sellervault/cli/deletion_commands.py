"""Client commands for deletion and return requests (role ``security-officer``; ``list`` and
``show`` also ``auditor``): file one, read the register, cancel a pending one, execute one.
A buyer's email is read from standard input, never from the command line (where shell
history and ``ps`` would keep it)."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from sellervault.cli.client import ClientError, checked, session_client
from sellervault.cli.common import call, console, fail, owner_only_file
from sellervault.deletion import certificates, returns

RETURN_TIMEOUT = httpx.Timeout(30.0, read=600.0)
"""The server hashes a returned file before its first byte (a pass over gigabytes, for a
tenant): minutes, not the usual 30 s, before the response starts."""

deletions_app = typer.Typer(no_args_is_help=True, help=(
    "Deletion and return requests (security officer): `file` one for an order, a buyer or a "
    "tenant (due 72 hours after receipt; with --return-to, the data is first returned "
    "encrypted to the recipient's public key, once a second officer ran `approve-return`), "
    "`list` the register, `show` one, `cancel` a "
    "pending one, `execute` one (returned, the scope's keys destroyed, its rows deleted, "
    "verified), `return` fetches a returned file, `open-return` opens one offline with the "
    "recipient's private key."))

RequestId = Annotated[str, typer.Argument(help="The request id (del_...).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _print(request: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(request))
        return
    subject = request["amazon_order_id"] or request["buyer"] or "the whole tenant"
    console.print(escape(
        f"{request['id']}  {request['status']:9} {request['scope']:6} {request['tenant']}  "
        f"{subject}  due {request['deadline']}"
        f"{'  step ' + request['step'] if request.get('step') else ''}"
        f"{_progress(request)}"), highlight=False)


def _progress(request: dict[str, Any]) -> str:
    if request["status"] != "executing" or request.get("orders") is None:
        return ""
    return f"  {request.get('rows_deleted') or 0}/{request['orders']} deleted"


@deletions_app.command("file")
def deletions_file(
    scope: Annotated[str, typer.Option(help="order, buyer or tenant.")],
    tenant: Annotated[str, typer.Option(help="The tenant.")],
    requested_by: Annotated[str, typer.Option(help="Who asked: the marketplace, a ticket.")],
    order: Annotated[str | None, typer.Option(help="Scope order: the order id.")] = None,
    buyer_email_stdin: Annotated[bool, typer.Option(
        "--buyer-email-stdin", help="Scope buyer: read the buyer's email from standard "
                                    "input.")] = False,
    received_at: Annotated[str | None, typer.Option(
        help="When the request reached you (ISO 8601 with a zone; default: now).")] = None,
    return_to: Annotated[Path | None, typer.Option(
        help="Return the data first, encrypted to this public key: a JWK file (EC P-256, "
             "P-384, P-521 or OKP X25519, X448).")] = None,
    as_json: AsJson = False,
) -> None:
    """File a request; it is due the configured hours (72) after its receipt."""
    body: dict[str, Any] = {"scope": scope, "tenant": tenant, "requested_by": requested_by}
    if return_to is not None:
        body["return"], body["return_to"] = True, _jwk(return_to)
    if order is not None:
        body["amazon_order_id"] = order
    if buyer_email_stdin:
        line = sys.stdin.readline().strip()
        if not line:
            raise fail("expected the buyer's email on standard input")
        body["buyer_email"] = line
    if received_at is not None:
        body["received_at"] = received_at
    _print(call("POST", "/deletion-requests", json=body), as_json)


@deletions_app.command("list")
def deletions_list(
    status: Annotated[str | None, typer.Option(
        help="pending, executing, completed or cancelled (default: all).")] = None,
    as_json: AsJson = False,
) -> None:
    """The register, newest first."""
    found = call("GET", "/deletion-requests",
                 params={"status": status} if status else {})["deletion_requests"]
    if as_json:
        print(json.dumps(found))
        return
    for request in found:
        _print(request, False)


@deletions_app.command("show")
def deletions_show(request_id: RequestId, as_json: AsJson = False) -> None:
    """One request: its scope, deadline, state and counts."""
    _print(call("GET", f"/deletion-requests/{request_id}"), as_json)


@deletions_app.command("cancel")
def deletions_cancel(request_id: RequestId, as_json: AsJson = False) -> None:
    """Cancel a pending request (not once its execution has begun)."""
    _print(call("POST", f"/deletion-requests/{request_id}/cancel"), as_json)


@deletions_app.command("execute")
def deletions_execute(request_id: RequestId, as_json: AsJson = False) -> None:
    """Execute a request (again, after a failure: it resumes where it stopped)."""
    done = call("POST", f"/deletion-requests/{request_id}/execute")
    if as_json:
        print(json.dumps(done))
        return
    certificate = done["certificate_id"]
    if done["status"] == "executing":  # (202: a large scope, going on in the background)
        console.print(escape(
            f"Request {request_id} is executing in the background (step {done['step']}"
            f"{', unreadable now' if done['step'] == 'keys_destroyed' else ''}): "
            f"{done['rows_deleted'] or 0} of {done['orders'] or '?'} orders deleted so far; "
            f"`sellervault deletions show {request_id}` for its progress."), highlight=False)
        return
    console.print(escape(f"Request {request_id} is {done['status']} (step {done['step']})"
                         f"{', certificate ' + certificate if certificate else ''}."),
                  highlight=False)


def _jwk(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise fail(f"{path}: not a readable JSON Web Key file") from None


@deletions_app.command("approve-return")
def deletions_approve_return(request_id: RequestId, as_json: AsJson = False) -> None:
    """As a second security officer (not the one who filed it), approve a pending request's
    return and the recipient key it names; it is executed only then."""
    approved = call("POST", f"/deletion-requests/{request_id}/approve-return")
    if as_json:
        print(json.dumps(approved))
        return
    console.print(escape(f"Return of {request_id} approved: the data goes to the key "
                         f"{approved['return_key_id']}."), highlight=False)


@deletions_app.command("return")
def deletions_return(
    request_id: RequestId,
    output: Annotated[Path, typer.Option("--out", help="Write the returned file here.")],
) -> None:
    """Fetch a request's returned file (a JWE per line, which only the recipient's private
    key opens), streamed to disk and checked against the SHA-256 the request records: the
    file appears only if it matches."""
    expected = call("GET", f"/deletion-requests/{request_id}")["return_sha256"]
    hashed, size = hashlib.sha256(), 0
    try:
        with session_client() as client, client.stream(
                "GET", f"/deletion-requests/{request_id}/return",
                timeout=RETURN_TIMEOUT) as response, owner_only_file(output) as out:
            if response.status_code >= 400:
                response.read()
                checked(response)
            for chunk in response.iter_bytes():
                hashed.update(chunk)
                size += len(chunk)
                out.write(chunk)
            if not hmac.compare_digest(hashed.hexdigest(), expected or ""):
                raise ClientError("the file fetched does not match the request's SHA-256: "
                                  "not written")
    except (ClientError, httpx.HTTPError, OSError) as exc:
        raise fail(str(exc)) from None
    console.print(escape(f"written to {output}: {size} bytes, SHA-256 {expected} "
                         "(as the request and its certificate record)"), highlight=False)


@deletions_app.command("open-return")
def deletions_open_return(
    returned: Annotated[Path, typer.Argument(help="A returned file.")],
    key: Annotated[Path, typer.Option(help="The recipient's private key: a JWK file.")],
    sha256: Annotated[str | None, typer.Option(
        "--sha256", help="The SHA-256 the certificate records for the returned file: "
                         "checked before anything is printed.")] = None,
) -> None:
    """For the recipient, offline: every order in a returned file, one JSON object per
    line (with PII in clear: write it somewhere safe). Read a part at a time; with --sha256
    (the certificate's `returned.sha256`) the whole file is checked before anything is
    printed."""
    try:
        private = _jwk(key)
        if sha256 is not None:
            with returned.open("rb") as whole:
                found = hashlib.file_digest(whole, "sha256").hexdigest()
            if not hmac.compare_digest(found, sha256.lower()):
                raise ValueError("its SHA-256 is not the one given: nothing printed")
        with returned.open("rb") as lines:
            for orders in returns.open_parts(lines, private):
                for order in orders:
                    print(json.dumps(order, ensure_ascii=False))
    except (OSError, ValueError, KeyError) as error:
        raise fail(f"{returned}: {error}") from None


holds_app = typer.Typer(no_args_is_help=True, help=(
    "Legal holds (security officer; `list` also auditor): keep one order from retention "
    "(PII erasure after delivery, removal after 18 months) until a date, for a reason."))


def _print_hold(hold: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(hold))
        return
    released = f"  released {hold['released_at']}" if hold["released_at"] else ""
    console.print(escape(f"{hold['id']}  {hold['tenant']} {hold['amazon_order_id']}  until "
                         f"{hold['until']}  {hold['reason']}{released}"), highlight=False)


@holds_app.command("place")
def holds_place(
    tenant: Annotated[str, typer.Option(help="The tenant.")],
    order: Annotated[str, typer.Option(help="The order id.")],
    reason: Annotated[str, typer.Option(help="Why: a case, a ticket.")],
    until: Annotated[str, typer.Option(help="When it ends (ISO 8601 with a zone).")],
    as_json: AsJson = False,
) -> None:
    """Hold one order until a date."""
    _print_hold(call("POST", "/legal-holds", json={
        "tenant": tenant, "amazon_order_id": order, "reason": reason, "until": until}), as_json)


@holds_app.command("list")
def holds_list(as_json: AsJson = False) -> None:
    """Every hold placed, newest first (released ones too)."""
    found = call("GET", "/legal-holds")["legal_holds"]
    if as_json:
        print(json.dumps(found))
        return
    for hold in found:
        _print_hold(hold, False)


@holds_app.command("release")
def holds_release(hold_id: Annotated[str, typer.Argument(help="The hold id (hld_...).")],
                  as_json: AsJson = False) -> None:
    """End a hold now."""
    _print_hold(call("POST", f"/legal-holds/{hold_id}/release"), as_json)


certificates_app = typer.Typer(no_args_is_help=True, help=(
    "Certificates of sanitization (security officer, auditor): `get` one (JSON, or a "
    "printable HTML form), `public-key` to check them with, and `verify` one offline with "
    "the public key alone (no server)."))


def _write(text: str, output: Path | None) -> None:
    if output is None:
        print(text)
        return
    output.write_text(text + "\n", encoding="utf-8")
    console.print(escape(f"written to {output}"), highlight=False)


@certificates_app.command("get")
def certificates_get(
    certificate_id: Annotated[str, typer.Argument(help="The certificate id (cert_...).")],
    output: Annotated[Path | None, typer.Option(help="Write it to this file.")] = None,
    as_html: Annotated[bool, typer.Option("--html", help="A printable HTML form.")] = False,
) -> None:
    """A certificate as the server signed it (JSON), or as a printable page."""
    signed = call("GET", f"/certificates/{certificate_id}")
    _write(certificates.render_html(signed) if as_html else json.dumps(signed, indent=2),
           output)


@certificates_app.command("public-key")
def certificates_public_key(
    output: Annotated[Path | None, typer.Option(help="Write it to this file.")] = None,
) -> None:
    """The Ed25519 public key (PEM) certificates are checked with."""
    _write(call("GET", "/certificates/public-key")["public_key"].rstrip("\n"), output)


@certificates_app.command("verify")
def certificates_verify(
    certificate_file: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, help="A certificate from `certificates get`.")],
    public_key: Annotated[Path, typer.Option(exists=True, dir_okay=False, help=(
        "The PEM from `certificates public-key`."))],
) -> None:
    """Check a certificate with the public key alone (no server, no data directory): exit
    0 if it is as signed, else 1 and why. A file that reads two ways (a key twice in one
    object) is refused, whatever its signature."""
    try:
        signed = certificates.parse(certificate_file.read_text(encoding="utf-8"))
        certificate = certificates.verify(signed, public_key.read_bytes())
    except (ValueError, certificates.CertificateError) as exc:
        reason = str(exc) if isinstance(exc, certificates.CertificateError) else "not JSON"
        raise fail(f"certificate invalid: {reason}") from None
    console.print(escape(f"certificate valid: request {certificate['request_id']}, "
                         f"{certificate['scope']['kind']} of tenant "
                         f"{certificate['scope']['tenant']}, "
                         f"{certificate['counts']['orders']} order(s), completed "
                         f"{certificate['times']['completed']}"), highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(deletions_app, name="deletions")
    app.add_typer(holds_app, name="holds")
    app.add_typer(certificates_app, name="certificates")
