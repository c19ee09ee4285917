"""`sellervault`: bootstrap commands on a data directory, and a client for the HTTPS API."""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import pyotp
import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import DBAPIError

from sellervault import bootstrap, network
from sellervault.accounts.errors import AccountError
from sellervault.audit import proofs
from sellervault.audit.errors import LogError
from sellervault.cli import audit_commands, client_commands
from sellervault.config import ConfigError, Settings, load_settings
from sellervault.crypto.credentials import new_password
from sellervault.crypto.errors import KeyFileError
from sellervault.crypto.keyring import UnknownTenantKeyError
from sellervault.jobs.registry import JOBS, UnknownJobError
from sellervault.jobs.runner import JobState, RunStatus
from sellervault.store import backups, maintenance

app = typer.Typer(
    name="sellervault", no_args_is_help=True, add_completion=False,
    pretty_exceptions_show_locals=False,  # locals can hold passwords and tokens
    help="SellerVault: marketplace buyer data kept encrypted, least-privilege, and audited.",
)
audit_app = typer.Typer(no_args_is_help=True, help=(
    "The security log. On the data directory (operators): verify, prove, public-key, "
    "check-proof (no directory). Through the server (security officer, auditor): export, "
    "review, reviews."))
app.add_typer(audit_app, name="audit")
audit_commands.register(audit_app)
keys_app = typer.Typer(no_args_is_help=True, help="Key rotation (operators, on the data "
                       "directory).")
app.add_typer(keys_app, name="keys")
jobs_app = typer.Typer(no_args_is_help=True, help=(
    "The periodic jobs `serve` runs (on the data directory): see where each stands, or run "
    "one by hand. Every server process schedules them; each due run happens on one of them."))
app.add_typer(jobs_app, name="jobs")
client_commands.register(app)

console = Console(soft_wrap=True)  # never hard-wrap paths, secrets or messages
err = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="The data directory "
                    "(default: SELLERVAULT_DATA_DIR, else var/sellervault).")]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, markup=True)
    return typer.Exit(code)


def database_problem(exc: DBAPIError) -> str:
    """The driver's first line only: SQLAlchemy's own text adds the statement and its
    parameters, which can hold an email or a password hash."""
    lines = str(exc.orig).strip().splitlines()
    return f"the database refused: {lines[0] if lines else type(exc.orig).__name__}"


def settings_for(data_dir: Path | None, **overrides: Any) -> Settings:
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None


def _read_secret_line(what: str) -> str:
    line = sys.stdin.readline()
    if not line:
        raise fail(f"expected the {what} on standard input")
    return line.rstrip("\r\n")


@app.command()
def init(
    admin_email: Annotated[str, typer.Option(help="The first administrator's own email.")],
    admin_name: Annotated[str, typer.Option(help="The first administrator's full name.")],
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the administrator's password from standard input.")],
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Create the root key, TLS certificate, database and the first administrator."""
    if not password_stdin:
        raise fail("the password is only read from standard input: pass --password-stdin")
    settings = settings_for(data_dir)
    password = _read_secret_line("administrator's password")
    try:
        result = bootstrap.init(settings, admin_email=admin_email, admin_name=admin_name,
                                admin_password=password)
    except (bootstrap.BootstrapError, KeyFileError, AccountError) as exc:
        raise fail(str(exc)) from None
    except DBAPIError as exc:
        raise fail(database_problem(exc)) from None
    if as_json:
        print(json.dumps({"admin_id": result.admin_id, "totp_secret": result.totp_secret,
                          "recovery_codes": list(result.recovery_codes),
                          "certificate": str(result.certificate)}))
        return
    console.print(f"Initialised {settings.data_dir}")
    console.print(f"Administrator: {result.admin_id}")
    console.print("TOTP secret (shown once; add it to an authenticator app now): "
                  f"[bold]{result.totp_secret}[/bold]")
    console.print("Recovery codes (shown once; each works once in place of a code; keep them "
                  "offline):")
    for code in result.recovery_codes:
        console.print(f"  {code}")
    console.print(f"TLS certificate: {result.certificate}"
                  + (f" (SHA-256 {result.certificate_sha256})" if result.certificate_sha256
                     else ""))


def _serve(settings: Settings, host: str, port: int) -> None:
    from sellervault.web.server import build_server, freeze_startup_objects

    try:
        runtime = bootstrap.open_runtime(settings)
    except (bootstrap.BootstrapError, KeyFileError) as exc:
        raise fail(str(exc)) from None
    except DBAPIError as exc:
        raise fail(database_problem(exc)) from None
    try:
        if runtime.claim is not None:  # (lost with its connection: taken again, or stop)
            runtime.claim.watch(_stop_now)
        bootstrap.record_serve(runtime)
        console.print(f"SellerVault listening on https://{host}:{port} (TLS only)")
        if not network.is_loopback_host(host) and network.Networks.parse(
                settings.allowed_networks).loopback_only:
            err.print("[yellow]warning:[/yellow] listening beyond this machine, but only "
                      "loopback addresses are allowed: every other client gets 403. Set "
                      "SELLERVAULT_ALLOWED_NETWORKS to the networks that may connect.",
                      highlight=False)
        server = build_server(runtime, host, port)
        freeze_startup_objects()
        # uvicorn shuts down gracefully on SIGTERM, then raises it again: as SystemExit, so
        # that the runtime below is closed (events flushed, claim released) before exiting.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        server.run()
    finally:
        runtime.close()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _stop_now() -> None:
    """A restore took the vault's claim while this server had lost it (its database
    connection ended): stop at once, with no graceful shutdown, since requests in flight
    would read a database being replaced."""
    err.print("[red]error:[/red] a restore of this vault began while this server had lost "
              "its claim: stopping now", highlight=False)
    os._exit(75)


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="TLS port.")] = None,
) -> None:
    """Serve the HTTPS API (TLS only; there is no plaintext listener)."""
    settings = settings_for(data_dir)
    _serve(settings, host or settings.host, port or settings.port)


@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where the demo keeps its data.")]
    = Path("var/demo"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TLS port.")] = 8443,
) -> None:
    """Init + a synthetic tenant with orders and canaries + serve, on the embedded default."""
    settings = settings_for(data_dir)
    if bootstrap.is_initialized(settings):
        console.print(f"{data_dir} already holds a demo; its credentials were printed when it "
                      f"was made. Delete {data_dir} to start over.")
    else:
        email, password = "dana.demo@example.test", new_password(20)
        result = bootstrap.init(settings, admin_email=email, admin_name="Dana Demo",
                                admin_password=password)
        runtime = bootstrap.open_runtime(settings)
        try:
            bootstrap.seed_demo(runtime)
        finally:
            runtime.close()
        totp = pyotp.TOTP(result.totp_secret)
        console.print(f"Demo data directory: {data_dir} (tenant '{bootstrap.DEMO_TENANT}', "
                      f"{bootstrap.DEMO_ORDERS} synthetic orders, "
                      f"{settings.canaries_per_tenant} canaries)")
        console.print("One-time demo credentials (shown once):")
        console.print(f"  email:       {email}")
        console.print(f"  password:    {password}")
        console.print(f"  TOTP secret: {result.totp_secret} (current code {totp.now()})")
        console.print(f"  CA cert:     {result.certificate}")
        console.print(f"Log in: sellervault login --server https://{host}:{port} "
                      f"--ca-cert {result.certificate} --email {email}")
    console.print(f"URL: https://{host}:{port}/api/v1/health")
    _serve(settings, host, port)


@audit_app.command("verify")
def audit_verify(data_dir: DataDir = None) -> None:
    """Exit 0 if the security log is intact (with a warning when no signed checkpoint has
    covered its newest events for 10 minutes: no server runs the checkpoint job); otherwise
    name the first bad event, exit 1."""
    settings = settings_for(data_dir)
    try:
        result = bootstrap.verify_log(settings)
    except (bootstrap.BootstrapError, KeyFileError) as exc:
        raise fail(str(exc), 2) from None
    except DBAPIError as exc:
        raise fail(database_problem(exc), 2) from None
    if result.ok:
        console.print(f"security log intact: {result.events} events and "
                      f"{result.checkpoints} signed checkpoints verified")
        if result.waited is not None:
            minutes = int(result.waited.total_seconds() // 60)
            err.print("[yellow]warning:[/yellow] " + escape(
                f"no signed checkpoint covers the events since {result.uncovered_since} "
                f"({minutes} minutes): is a server running the audit-checkpoint job? "
                "(`sellervault jobs list`; `sellervault jobs run audit-checkpoint` signs one "
                "now)"), highlight=False)
        return
    raise fail(f"security log broken at event {result.first_bad_seq}: {result.problem}")


@audit_app.command("prove")
def audit_prove(
    event_id: Annotated[int, typer.Argument(min=1, help="The event's number (its seq).")],
    data_dir: DataDir = None,
) -> None:
    """Print, as JSON, the proof that one event is in the log: its canonical body, its
    RFC 6962 inclusion path to the latest signed checkpoint, and that checkpoint. Anyone
    holding the public key (`audit public-key`) checks it with `audit check-proof`, or with
    their own code (docs/operations.md, section 9)."""
    settings = settings_for(data_dir)
    try:
        proof = bootstrap.prove_event(settings, event_id)
    except (bootstrap.BootstrapError, KeyFileError, proofs.ProofUnavailableError) as exc:
        raise fail(str(exc), 2 if not isinstance(exc, proofs.ProofUnavailableError)
                   else 1) from None
    except DBAPIError as exc:
        raise fail(database_problem(exc), 2) from None
    print(json.dumps(proof, indent=2))


@audit_app.command("public-key")
def audit_public_key(data_dir: DataDir = None) -> None:
    """Print the checkpoint key's public half (PEM): give it to whoever checks checkpoints
    and proofs (an auditor, a SIEM), out of band."""
    settings = settings_for(data_dir)
    try:
        print(bootstrap.checkpoint_public_key(settings), end="")
    except (bootstrap.BootstrapError, KeyFileError, proofs.ProofUnavailableError) as exc:
        raise fail(str(exc), 2) from None


@audit_app.command("check-proof")
def audit_check_proof(
    proof_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                               help="A proof printed by `audit prove`.")],
    public_key: Annotated[Path, typer.Option(exists=True, dir_okay=False,
                                             help="The PEM from `audit public-key`.")],
) -> None:
    """Check an inclusion proof with the public key alone (no data directory, no database):
    exit 0 if the event is in the log as the signed checkpoint states, else 1."""
    try:
        proof = json.loads(proof_file.read_text(encoding="utf-8"))
        checkpoint = proofs.check_proof(proof, public_key.read_bytes())
    except (ValueError, proofs.InvalidProofError) as exc:
        reason = str(exc) if isinstance(exc, proofs.InvalidProofError) else "not JSON"
        raise fail(f"proof invalid: {reason}") from None
    console.print(f"proof valid: event {proof['leaf_index'] + 1} is in the log as checkpoint "
                  f"{checkpoint.number} ({checkpoint.size} events, {checkpoint.time}) signed it")


@keys_app.command("rotate-root")
def keys_rotate_root(data_dir: DataDir = None) -> None:
    """Rotate the root key: re-wraps every tenant and system key, no data is re-encrypted.
    Stop the server first; start it again afterwards."""
    settings = settings_for(data_dir)
    try:
        version = bootstrap.rotate_root_key(settings)
    except (bootstrap.BootstrapError, KeyFileError) as exc:
        raise fail(str(exc), 2) from None
    console.print(f"root key rotated: version {version} is active, older versions removed")


@keys_app.command("rotate-tenant")
def keys_rotate_tenant(
    tenant: Annotated[str, typer.Argument(help="The tenant whose key to rotate.")],
    data_dir: DataDir = None,
) -> None:
    """Rotate one tenant's key: re-wraps its data keys, no data is re-encrypted."""
    settings = settings_for(data_dir)
    try:
        version = bootstrap.rotate_tenant_key(settings, tenant)
    except (bootstrap.BootstrapError, KeyFileError, UnknownTenantKeyError) as exc:
        raise fail(str(exc), 2) from None
    console.print(f"tenant {tenant}: key version {version} is active, data keys re-wrapped")


def _moment(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value is not None else "-"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _every(interval: timedelta) -> str:
    seconds = int(interval.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _last_run(state: JobState) -> str:
    if state.running_since is not None:
        return f"running since {_moment(state.running_since)}"
    if state.last_finished_at is None:
        return "never"
    count = f" ({state.last_count})" if state.last_count is not None else ""
    return f"{_moment(state.last_finished_at)} {state.last_outcome}{count}"


@jobs_app.command("list")
def jobs_list(
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the jobs as JSON.")] = False,
) -> None:
    """Each job: how often it runs, when its last run ended and how (its count), when the
    next is due (UTC), and OVERDUE when a whole interval has passed since with no run: no
    server is running the jobs. A job no server has scheduled yet shows "-": a server
    schedules it at start, one interval ahead. Read from the database, so it shows every
    server's runs; the read is recorded as a jobs:list event."""
    settings = settings_for(data_dir)
    try:
        states = bootstrap.list_jobs(settings)
    except (bootstrap.BootstrapError, KeyFileError, LogError) as exc:
        raise fail(str(exc), 2) from None
    except DBAPIError as exc:
        raise fail(database_problem(exc), 2) from None
    if as_json:
        print(json.dumps([{
            "name": state.job.name, "interval_seconds": int(state.job.interval.total_seconds()),
            "running_since": _iso(state.running_since),
            "last_finished_at": _iso(state.last_finished_at),
            "last_outcome": state.last_outcome, "last_count": state.last_count,
            "next_due_at": _iso(state.next_due_at), "overdue": state.overdue,
        } for state in states]))
        return
    rows = [("NAME", "EVERY", "LAST RUN", "NEXT DUE")] + [
        (state.job.name, _every(state.job.interval), _last_run(state),
         _moment(state.next_due_at) + ("  OVERDUE" if state.overdue else ""))
        for state in states]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        console.print("  ".join(cell.ljust(width)
                                for cell, width in zip(row[:3], widths, strict=True))
                      + "  " + row[3], highlight=False, markup=False)


@jobs_app.command("run")
def jobs_run(
    name: Annotated[str, typer.Argument(help="The job to run: " + ", ".join(
        f"{job.name} ({job.summary})" for job in JOBS) + ".")],
    data_dir: DataDir = None,
    attempts: Annotated[int | None, typer.Option(min=1, max=10, help=(
        "Attempts before giving up (default: the job's own, 3); a failed attempt is retried "
        "after 2 s, then 4 s, ..."))] = None,
) -> None:
    """Run one job once, now, in this process, whether it is due or not. It counts as the
    job's run: the next is due one interval later. It never overlaps a run in progress on a
    server (then it does nothing and exits 1). Recorded as a jobs:run event (channel cli).
    Exit 0 when it succeeded, 1 when it failed or was already running, 2 when it could not
    start (an unknown job, the data directory, the database)."""
    settings = settings_for(data_dir)
    try:
        result = bootstrap.run_job(settings, name, attempts)
    except (bootstrap.BootstrapError, KeyFileError, LogError, UnknownJobError) as exc:
        raise fail(str(exc), 2) from None
    except DBAPIError as exc:
        raise fail(database_problem(exc), 2) from None
    if result.status is RunStatus.SUCCEEDED:
        console.print(f"job {result.job}: success, count {result.count}", highlight=False)
        return
    if result.status is RunStatus.SKIPPED:
        raise fail(f"job {result.job} is running elsewhere; not started again")
    if result.attempts == 0:
        raise fail(f"job {result.job} could not start ({result.error})", 2)
    raise fail(f"job {result.job} failed after {result.attempts} attempt(s) ({result.error}); "
               "recorded as a jobs:run error event")


retention_app = typer.Typer(no_args_is_help=True, help=(
    "Retention from the order's life (on the data directory): buyer PII erased 30 days "
    "after delivery (or shipment), orders removed 18 months after purchase, except under a "
    "legal hold. The order-retention job does it daily."))
app.add_typer(retention_app, name="retention")


@retention_app.command("run")
def retention_run(
    data_dir: DataDir = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=(
        "Say what would go, and change nothing."))] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Run the order-retention job now (as `jobs run order-retention`), or with --dry-run
    count what it would erase and remove, what legal holds keep, and the orders whose PII has
    no expiry yet (no delivery or ship date)."""
    settings = settings_for(data_dir)
    if not dry_run:
        jobs_run("order-retention", data_dir)
        return
    try:
        report = bootstrap.preview_retention(settings)
    except (bootstrap.BootstrapError, KeyFileError, LogError) as exc:
        raise fail(str(exc), 2) from None
    except DBAPIError as exc:
        raise fail(database_problem(exc), 2) from None
    counts = {"pii_removed": report.pii_removed, "orders_removed": report.orders_removed,
              "held": report.held, "without_pii_expiry": report.without_pii_expiry,
              "tombstones_removed": report.tombstones_removed}
    if as_json:
        print(json.dumps({**counts, "dry_run": True}))
        return
    console.print(f"would erase the buyer PII of {report.pii_removed} order(s) and remove "
                  f"{report.orders_removed} order(s); {report.held} kept by a legal hold; "
                  f"{report.without_pii_expiry} with no delivery or ship date yet; "
                  f"{report.tombstones_removed} tombstone(s) of deleted orders would go",
                  highlight=False)


@app.command()
def backup(
    out: Annotated[Path, typer.Option("--out", help="The backup file to write.")],
    also_to: Annotated[list[str] | None, typer.Option(
        "--also-to", help="Also encrypt it to this age recipient (age1...), yours, so it "
                          "opens with the age tool away from the vault. Repeatable.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Write an encrypted backup (age, to the vault's backup identity in keys/): the
    database and the data directory's files, never keys/ (keep the root key apart) nor the
    checkpoint file. PII stays sealed under its data keys inside it."""
    settings = settings_for(data_dir)
    try:
        manifest = bootstrap.make_backup(settings, out, also_to)
    except (bootstrap.BootstrapError, KeyFileError, LogError, backups.BackupError,
            maintenance.MaintenanceError) as exc:
        raise fail(str(exc), 2) from None
    except DBAPIError as exc:
        raise fail(database_problem(exc), 2) from None
    console.print(escape(f"backup written to {out}: the {manifest.dialect} database and "
                         f"{len(manifest.files)} file(s)"), highlight=False)


@app.command()
def restore(
    backup_file: Annotated[Path, typer.Argument(help="A file `sellervault backup` wrote.")],
    data_dir: DataDir = None,
) -> None:
    """Restore a backup into this vault (every server and command stopped: refused while
    anything has the vault open, and nothing opens it meanwhile; keys/ must be this vault's
    own, never one restored from a backup): the database and files are put back, then every
    deletion and retention erasure made since the backup is applied again before anything is
    served, so deleted PII stays deleted."""
    settings = settings_for(data_dir)
    try:
        restored = bootstrap.restore_backup(settings, backup_file)
    except (bootstrap.BootstrapError, KeyFileError, LogError, backups.BackupError,
            maintenance.MaintenanceError) as exc:
        raise fail(str(exc), 2) from None
    except DBAPIError as exc:
        raise fail(database_problem(exc), 2) from None
    console.print(escape(
        f"restored the backup of {restored.manifest.created_at}; {restored.reapplied} "
        "erasure(s) made since applied again. The security log's events after the backup "
        "are gone: `audit verify` will say so against the checkpoint file."), highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
