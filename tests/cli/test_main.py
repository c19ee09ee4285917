"""`sellervault` bootstrap commands (cli/main.py) run as the real executable: init on a fresh
data directory, refusals that leave nothing behind, help for every command, serve over TLS,
`audit verify` catching an edited or deleted security event, and the periodic jobs listed and
run by hand (a failed run exits 1, a run in progress on a server is never overlapped)."""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
import typer
from sqlalchemy import create_engine, func, insert, select, text
from typer.testing import CliRunner

from sellervault import bootstrap
from sellervault.access.actions import Action
from sellervault.accounts.models import Account
from sellervault.accounts.passwords import verify_password
from sellervault.audit import checkpoints
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Outcome, TargetType
from sellervault.audit.models import EventRow
from sellervault.cli.main import app
from sellervault.clock import ManualClock
from sellervault.config import Settings
from sellervault.jobs.models import JobRunRow
from sellervault.jobs.runner import JOB_FAILED, JOB_RUNNING, job_lock_id
from sellervault.monitoring.models import AlertRow
from sellervault.store import maintenance
from tests.cli.helpers import COMMAND, Cli, mode
from tests.support import ADMIN_EMAIL, ADMIN_NAME, ADMIN_PASSWORD

CONTRACT_COMMANDS = {"init", "serve", "demo", "audit verify", "login", "accounts create",
                     "orders get", "import", "jobs list", "jobs run"}


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "config")


def database_env(settings: Settings) -> dict[str, str]:
    """What a shell would export to point the CLI at the test's database."""
    if settings.database_url is None:
        return {}
    return {"SELLERVAULT_DATABASE_URL": settings.database_url.get_secret_value()}


def init_args(data_dir: Path) -> list[str | Path]:
    return ["init", "--data-dir", data_dir, "--admin-email", ADMIN_EMAIL,
            "--admin-name", ADMIN_NAME, "--password-stdin", "--json"]


def all_commands() -> dict[str, Any]:
    """Every command and group of the app, by its full name ("" is the app itself). Typer
    ships its own copy of click, so groups are recognised by their ``commands``."""
    found: dict[str, Any] = {}

    def walk(command: Any, name: str) -> None:
        found[name] = command
        for sub_name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, f"{name} {sub_name}".strip())

    walk(typer.main.get_command(app), "")
    return found


# -- help ------------------------------------------------------------------------------------

def test_every_command_has_help() -> None:
    commands = all_commands()
    assert set(commands) >= CONTRACT_COMMANDS
    runner = CliRunner()
    for name, command in commands.items():
        assert (command.help or "").strip(), f"`sellervault {name}` has no help text"
        result = runner.invoke(app, [*name.split(), "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage:" in result.output, name
        for param in command.params:
            if "--help" not in param.opts:
                assert (param.help or "").strip(), f"`sellervault {name}` {param.opts}: no help"


def test_help_of_the_real_executable_lists_the_commands(cli: Cli) -> None:
    result = cli.run("--help")
    assert result.code == 0, result
    for name in ("init", "serve", "demo", "audit", "login", "accounts", "orders", "import",
                 "jobs"):
        assert name in result.stdout


# -- init ------------------------------------------------------------------------------------

def test_init_prints_json_and_keeps_keys_owner_only(cli: Cli, settings: Settings) -> None:
    data_dir = settings.data_dir
    result = cli.run(*init_args(data_dir), stdin=ADMIN_PASSWORD + "\n",
                     env=database_env(settings))
    assert result.code == 0, result
    printed = result.json()
    assert set(printed) == {"admin_id", "totp_secret", "recovery_codes", "certificate"}
    assert len(printed["recovery_codes"]) == 10
    assert printed["admin_id"].startswith("acc_")
    assert pyotp.TOTP(printed["totp_secret"]).now().isdigit()  # a usable base32 secret
    certificate = Path(printed["certificate"])
    assert certificate.resolve() == (data_dir / "tls" / "server.crt").resolve()
    assert certificate.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert ADMIN_PASSWORD not in result.output

    assert mode(data_dir) == 0o700
    assert mode(settings.root_key_file) == 0o600
    assert mode(settings.root_key_file.parent) == 0o700
    assert mode(settings.certificate_key_file) == 0o600
    root_key = settings.root_key_file.read_bytes()

    # The administrator exists, with the password from stdin (checked in-process).
    runtime = bootstrap.open_runtime(settings)
    try:
        with runtime.store.transaction() as session:
            admin = session.get(Account, printed["admin_id"])
            assert admin is not None and admin.email == ADMIN_EMAIL
            assert verify_password(admin.password_hash, ADMIN_PASSWORD)
            events = session.scalars(select(EventRow).order_by(EventRow.seq)).all()
            assert ("system:init", "cli") in {(e.action, e.channel) for e in events}
    finally:
        runtime.close()

    again = cli.run(*init_args(data_dir), stdin=ADMIN_PASSWORD + "\n",
                    env=database_env(settings))
    assert again.code != 0, again
    assert "already initialised" in again.stderr
    assert str(data_dir) in again.stderr
    assert settings.root_key_file.read_bytes() == root_key  # nothing was overwritten


@pytest.mark.parametrize("existing", [False, True], ids=["absent-dir", "empty-dir"])
def test_weak_password_fails_and_writes_nothing(cli: Cli, tmp_path: Path,
                                                existing: bool) -> None:
    data_dir = tmp_path / "vault"
    if existing:
        data_dir.mkdir()
    result = cli.run(*init_args(data_dir), stdin="Short1pass!\n")  # 11 characters
    assert result.code != 0, result
    assert "at least 12 characters" in result.stderr
    assert "Short1pass!" not in result.output
    if existing:
        assert list(data_dir.iterdir()) == []
    else:
        assert not data_dir.exists()


def test_init_on_an_unusable_database_fails_cleanly_and_can_be_retried(cli: Cli,
                                                                       tmp_path: Path) -> None:
    data_dir = tmp_path / "vault"
    unusable = "postgresql+psycopg://postgres:hunter2-not-echoed@127.0.0.1:5432/sv_no_such_db"
    result = cli.run(*init_args(data_dir), stdin=ADMIN_PASSWORD + "\n",
                     env={"SELLERVAULT_DATABASE_URL": unusable})
    assert result.code == 1, result
    assert result.stderr.startswith("error: the database refused: "), result
    assert "Traceback" not in result.output
    assert "hunter2-not-echoed" not in result.output
    assert [p for p in data_dir.rglob("*") if p.is_file()] == []  # no key left to block a retry
    retried = cli.run(*init_args(data_dir), stdin=ADMIN_PASSWORD + "\n")
    assert retried.code == 0, retried


def test_init_refuses_without_password_stdin(cli: Cli, tmp_path: Path) -> None:
    """The flag is a required option: Typer's usage error (exit 2) names it."""
    data_dir = tmp_path / "vault"
    result = cli.invoke("init", "--data-dir", data_dir, "--admin-email", ADMIN_EMAIL,
                        "--admin-name", ADMIN_NAME, stdin=ADMIN_PASSWORD + "\n")
    assert result.code == 2, result
    assert "Missing option '--password-stdin'" in result.stderr
    assert not data_dir.exists()


def test_init_with_empty_stdin_fails_cleanly(cli: Cli, tmp_path: Path) -> None:
    data_dir = tmp_path / "vault"
    result = cli.invoke(*init_args(data_dir), stdin="")
    assert result.code == 1, result
    assert "expected the administrator's password on standard input" in result.stderr
    assert not data_dir.exists()


# -- serve -----------------------------------------------------------------------------------

WIDE_OPEN_WARNING = "only loopback addresses are allowed: every other client gets 403"


@contextmanager
def _serving(cli: Cli, settings: Settings, initialized: bootstrap.InitResult,
             host: str = "127.0.0.1", allowed: str | None = None
             ) -> Iterator[tuple[httpx.Response, list[str]]]:
    """``sellervault serve`` as a process of its own, up and answering: its health answer
    and, once it has been stopped at the end of the block, its output."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("SELLERVAULT_")}
    environment.update(database_env(settings), XDG_CONFIG_HOME=str(cli.config_home))
    if allowed is not None:
        environment["SELLERVAULT_ALLOWED_NETWORKS"] = allowed
    process = subprocess.Popen([*COMMAND, "serve", "--data-dir", str(settings.data_dir),
                                "--host", host, "--port", str(port)],
                               env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    try:
        context = ssl.create_default_context(cafile=str(initialized.certificate))
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"https://127.0.0.1:{port}/api/v1/health", verify=context)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.2)
        yield response, output
    finally:
        process.terminate()
        output.append(process.communicate(timeout=30)[0])
        output.append(f"https://{host}:{port}")
    # SIGTERM: uvicorn's graceful shutdown, then the runtime closed (events flushed, claim
    # released) and a clean exit, not death by the signal uvicorn raises again (-15)
    assert process.returncode == 0, output[0]


@pytest.mark.parametrize(("host", "allowed", "warned"), [
    ("127.0.0.1", None, False),
    ("0.0.0.0", None, True),
    ("0.0.0.0", "127.0.0.0/8,192.168.0.0/16", False),
])
def test_serve_answers_over_tls(cli: Cli, settings: Settings,
                                initialized: bootstrap.InitResult, host: str,
                                allowed: str | None, warned: bool) -> None:
    """And says so at start when it listens beyond this machine with the default allowlist
    (loopback only), which would refuse every client it is listening for."""
    with _serving(cli, settings, initialized, host, allowed) as (response, output):
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert "max-age=" in response.headers["strict-transport-security"]
    printed, address = output
    assert f"listening on {address} (TLS only)" in printed
    assert (WIDE_OPEN_WARNING in printed) is warned
    assert "SELLERVAULT_ALLOWED_NETWORKS" in printed or not warned


def test_serve_refuses_an_uninitialised_directory(cli: Cli, tmp_path: Path) -> None:
    result = cli.invoke("serve", "--data-dir", tmp_path / "none")
    assert result.code == 1, result
    assert "is not initialised; run `sellervault init`" in result.stderr


# -- audit verify ----------------------------------------------------------------------------

def tamper(settings: Settings, statement: str) -> None:
    """Edit the security log behind the vault's back, straight in its database."""
    engine = create_engine(settings.effective_database_url())
    try:
        with engine.begin() as connection:
            changed = connection.execute(text(statement)).rowcount
        assert changed == 1
    finally:
        engine.dispose()


def test_audit_verify_detects_an_edited_event(cli: Cli, settings: Settings,
                                              initialized: bootstrap.InitResult) -> None:
    args = ("audit", "verify", "--data-dir", settings.data_dir)
    intact = cli.run(*args, env=database_env(settings))
    assert intact.code == 0, intact
    assert "security log intact" in intact.stdout

    tamper(settings, "UPDATE security_events SET outcome = 'denied' WHERE seq = 2")
    broken = cli.run(*args, env=database_env(settings))
    assert broken.code == 1, broken
    assert "security log broken at event 2" in broken.stderr
    assert "event 2 was altered" in broken.stderr
    engine = create_engine(settings.effective_database_url())  # the command's own alert
    try:
        with engine.connect() as connection:
            raised = connection.execute(select(AlertRow.rule, AlertRow.severity)).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in raised] == [("log-verification", "critical")]


def test_audit_prove_and_check_proof_with_the_public_key_alone(
        cli: Cli, settings: Settings, initialized: bootstrap.InitResult,
        tmp_path: Path) -> None:
    args, env = ("--data-dir", settings.data_dir), database_env(settings)
    none_yet = cli.run("audit", "prove", "1", *args, env=env)
    assert none_yet.code == 1 and "no checkpoint covers this event yet" in none_yet.stderr
    assert cli.run("jobs", "run", "audit-checkpoint", *args, env=env).code == 0
    proved = cli.run("audit", "prove", "1", *args, env=env)
    assert proved.code == 0, proved
    key = cli.run("audit", "public-key", *args, env=env)
    assert key.code == 0 and key.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    (tmp_path / "proof.json").write_text(proved.stdout)
    (tmp_path / "key.pem").write_text(key.stdout)
    checked = cli.run("audit", "check-proof", tmp_path / "proof.json", "--public-key",
                      tmp_path / "key.pem")  # no data directory, no database
    assert checked.code == 0, checked
    assert "proof valid: event 1 is in the log as checkpoint 1" in checked.stdout
    forged = proved.json()
    forged["event_body"] = forged["event_body"].replace('"success"', '"denied"')
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    refused = cli.run("audit", "check-proof", tmp_path / "forged.json", "--public-key",
                      tmp_path / "key.pem")
    assert refused.code == 1 and "proof invalid: the event is not under the signed root" \
        in refused.stderr
    intact = cli.run("audit", "verify", *args, env=env)
    assert intact.code == 0 and "1 signed checkpoints verified" in intact.stdout, intact


def test_audit_verify_warns_when_no_checkpoint_signs_the_newest_events(
        cli: Cli, settings: Settings, initialized: bootstrap.InitResult) -> None:
    """Intact, so exit 0; but events have waited half an hour for a signed checkpoint (no
    server runs the job): a warning on stderr says so, until a checkpoint covers them."""
    behind = ManualClock(datetime.now(UTC) - timedelta(minutes=30))
    runtime = bootstrap.open_runtime(settings, behind)
    try:
        checkpoints.write_checkpoint(runtime)
        behind.advance(60)
        with runtime.store.transaction() as session:
            Auditor(runtime.audit, bootstrap.cli_actor()).record(
                session, Action.JOBS_LIST, Outcome.SUCCESS, target_type=TargetType.JOB)
    finally:
        runtime.close()
    args, env = ("audit", "verify", "--data-dir", settings.data_dir), database_env(settings)
    warned = cli.run(*args, env=env)
    assert warned.code == 0 and "security log intact" in warned.stdout, warned
    assert "warning: no signed checkpoint covers the events since" in warned.stderr
    assert "(29 minutes)" in warned.stderr and "audit-checkpoint" in warned.stderr
    assert cli.run("jobs", "run", "audit-checkpoint", "--data-dir", settings.data_dir,
                   env=env).code == 0
    quiet = cli.run(*args, env=env)
    assert quiet.code == 0 and quiet.stderr == "", quiet


def test_audit_verify_detects_a_deleted_event(cli: Cli, settings: Settings,
                                              initialized: bootstrap.InitResult) -> None:
    bootstrap.verify_log(settings)  # a third event, so the one removed is in the middle
    tamper(settings, "DELETE FROM security_events WHERE seq = 2")
    broken = cli.run("audit", "verify", "--data-dir", settings.data_dir,
                     env=database_env(settings))
    assert broken.code == 1, broken
    assert "security log broken at event 2: event 2 is missing" in broken.stderr


def test_audit_verify_fails_on_a_wiped_log(cli: Cli, settings: Settings,
                                           initialized: bootstrap.InitResult) -> None:
    """The whole log and its head deleted: exit 1 naming the missing head (its own event
    cannot be written, and that is no reason to exit as if it could not run)."""
    tamper(settings, "DELETE FROM security_event_head")
    engine = create_engine(settings.effective_database_url())
    try:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM security_events"))
    finally:
        engine.dispose()
    broken = cli.run("audit", "verify", "--data-dir", settings.data_dir,
                     env=database_env(settings))
    assert broken.code == 1, broken
    assert "security log broken at event 1: the log's head is missing" in broken.stderr


def test_audit_verify_on_an_uninitialised_directory(cli: Cli, tmp_path: Path) -> None:
    result = cli.invoke("audit", "verify", "--data-dir", tmp_path / "none")
    assert result.code == 2, result
    assert "is not initialised; run `sellervault init`" in result.stderr


# -- keys ------------------------------------------------------------------------------------

def _ingest_one(settings: Settings) -> str:
    from sellervault.audit.auditor import Auditor
    from sellervault.audit.events import Actor, Channel
    from sellervault.records import service as records
    from sellervault.records.spapi import map_order, validate_order
    from sellervault.records.synthetic import synthetic_order

    raw = synthetic_order(1)
    runtime = bootstrap.open_runtime(settings)
    try:
        records.ingest(runtime, Auditor(runtime.audit, Actor(Channel.CLI)), "acme",
                       [map_order(validate_order(raw))])
    finally:
        runtime.close()
    return str(raw["AmazonOrderId"])


def _reveal_email(settings: Settings, order_id: str) -> str:
    from sellervault.audit.auditor import Auditor
    from sellervault.audit.events import Actor, Channel
    from sellervault.records import service as records

    runtime = bootstrap.open_runtime(settings)  # a fresh process's view: nothing cached
    try:
        auditor = Auditor(runtime.audit, Actor(Channel.CLI))
        order = runtime.store.call(records.reveal, runtime, auditor, "acme", order_id,
                                   "fulfillment")
    finally:
        runtime.close()
    return str(order["BuyerInfo"]["BuyerEmail"])


def test_rotate_root_rewraps_and_keeps_only_the_new_version(
        cli: Cli, settings: Settings, initialized: bootstrap.InitResult) -> None:
    order_id = _ingest_one(settings)
    email = _reveal_email(settings, order_id)
    before = settings.root_key_file.read_bytes()
    result = cli.run("keys", "rotate-root", "--data-dir", settings.data_dir,
                     env=database_env(settings))
    assert result.code == 0, result
    assert "version 2 is active" in result.stdout
    keyring = json.loads(settings.root_key_file.read_text())["keyring"]
    assert list(keyring["keys"]) == ["2"] and keyring["active"] == 2
    assert settings.root_key_file.read_bytes() != before
    assert stat.S_IMODE(settings.root_key_file.stat().st_mode) == 0o600
    assert _reveal_email(settings, order_id) == email
    assert bootstrap.verify_log(settings).ok


def test_rotate_tenant_rewraps_data_keys(cli: Cli, settings: Settings,
                                         initialized: bootstrap.InitResult) -> None:
    order_id = _ingest_one(settings)
    email = _reveal_email(settings, order_id)
    result = cli.run("keys", "rotate-tenant", "acme", "--data-dir", settings.data_dir,
                     env=database_env(settings))
    assert result.code == 0, result
    assert "key version 2 is active" in result.stdout
    assert _reveal_email(settings, order_id) == email
    unknown = cli.run("keys", "rotate-tenant", "nobody", "--data-dir", settings.data_dir,
                      env=database_env(settings))
    assert unknown.code == 2, unknown


# -- jobs ------------------------------------------------------------------------------------

def jobs_events(settings: Settings) -> list[tuple[Any, ...]]:
    engine = create_engine(settings.effective_database_url())
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(
                select(EventRow.action, EventRow.channel, EventRow.outcome, EventRow.target_id,
                       EventRow.count, EventRow.reason)
                .where(EventRow.action.like("jobs:%")).order_by(EventRow.seq))]
    finally:
        engine.dispose()


def add_session_ended_days_ago(settings: Settings, initialized: bootstrap.InitResult,
                               days: int) -> None:
    from sellervault.accounts.models import SessionRow

    ended = datetime.now(UTC) - timedelta(days=days)
    runtime = bootstrap.open_runtime(settings)
    try:
        with runtime.store.transaction() as session:
            session.add(SessionRow(token_hash=os.urandom(32), account_id=initialized.admin_id,
                                   created_at=ended - timedelta(hours=8), last_seen_at=ended,
                                   expires_at=ended))
    finally:
        runtime.close()


def test_jobs_are_listed_and_run_by_hand_each_time_recorded(
        cli: Cli, settings: Settings, initialized: bootstrap.InitResult) -> None:
    args, env = ("--data-dir", settings.data_dir), database_env(settings)
    listed = cli.run("jobs", "list", *args, env=env)
    assert listed.code == 0, listed
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["NAME", "EVERY", "LAST", "RUN", "NEXT", "DUE"]
    assert [row.split() for row in rows] == [  # never run: no server scheduled them
        ["audit-checkpoint", "1m", "never", "-"], ["sessions-purge", "1h", "never", "-"],
        ["account-end-dates", "5m", "never", "-"],
        ["inactive-accounts", "1h", "never", "-"], ["api-key-expiry", "1h", "never", "-"],
        ["audit-retention", "1d", "never", "-"], ["audit-review-reminder", "1d", "never", "-"],
        ["canaries-refresh", "1d", "never", "-"], ["deletion-deadlines", "5m", "never", "-"],
        ["deletion-executions", "30s", "never", "-"], ["order-retention", "1d", "never", "-"],
        ["alert-notifications", "15s", "never", "-"]]

    add_session_ended_days_ago(settings, initialized, days=2)
    ran = cli.run("jobs", "run", "sessions-purge", *args, env=env)
    assert ran.code == 0, ran
    assert ran.stdout.strip() == "job sessions-purge: success, count 1"

    listed = cli.run("jobs", "list", "--json", *args, env=env)
    assert listed.code == 0, listed
    [state] = [s for s in listed.json() if s["name"] == "sessions-purge"]
    assert (state["name"], state["interval_seconds"], state["last_outcome"],
            state["last_count"], state["running_since"]) == ("sessions-purge", 3600, "success",
                                                             1, None)
    finished = datetime.fromisoformat(state["last_finished_at"])
    assert abs(datetime.fromisoformat(state["next_due_at"]) - finished
               - timedelta(hours=1)) < timedelta(minutes=1)  # the run by hand was the hour's
    assert jobs_events(settings) == [
        ("jobs:list", "cli", "success", None, 12, None),
        ("jobs:run", "cli", "success", "sessions-purge", 1, None),
        ("jobs:list", "cli", "success", None, 12, None),
    ]


def test_jobs_list_marks_a_job_no_server_has_run_for_an_interval_overdue(
        cli: Cli, settings: Settings, initialized: bootstrap.InitResult) -> None:
    """The servers stopped running jobs an hour ago: the checkpoint job (every minute) is
    overdue, the daily retention is not."""
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    engine = create_engine(settings.effective_database_url())
    try:
        with engine.begin() as connection:
            connection.execute(insert(JobRunRow), [
                {"name": name, "next_due_at": hour_ago}
                for name in ("audit-checkpoint", "audit-retention")])
    finally:
        engine.dispose()
    args, env = ("--data-dir", settings.data_dir), database_env(settings)
    listed = cli.run("jobs", "list", *args, env=env)
    assert listed.code == 0, listed
    rows = {row.split()[0]: row for row in listed.stdout.splitlines()[1:]}
    assert rows["audit-checkpoint"].endswith("OVERDUE")
    assert not rows["audit-retention"].endswith("OVERDUE")
    as_json = {state["name"]: state["overdue"]
               for state in cli.run("jobs", "list", "--json", *args, env=env).json()}
    assert as_json["audit-checkpoint"] and not as_json["audit-retention"]
    assert not as_json["sessions-purge"]  # never scheduled: not overdue, "-"


def test_a_job_that_fails_exits_1_and_is_an_error_event(
        cli: Cli, settings: Settings, initialized: bootstrap.InitResult) -> None:
    engine = create_engine(settings.effective_database_url())
    try:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE sessions RENAME TO sessions_elsewhere"))
        failed = cli.run("jobs", "run", "sessions-purge", "--attempts", "1", "--data-dir",
                         settings.data_dir, env=database_env(settings))
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE sessions_elsewhere RENAME TO sessions"))
    finally:
        engine.dispose()
    assert failed.code == 1, failed
    assert "error: job sessions-purge failed after 1 attempt(s) (" in failed.stderr
    assert "attempt 1 of 1 failed" in failed.stderr  # the log line: the error's class only
    assert "Traceback" not in failed.output and "DELETE" not in failed.output
    assert jobs_events(settings) == [("jobs:run", "cli", "error", "sessions-purge", None,
                                      JOB_FAILED)]


def test_a_run_by_hand_never_overlaps_a_run_in_progress(
        cli: Cli, settings: Settings, initialized: bootstrap.InitResult) -> None:
    """A server's run of the job is going on: on PostgreSQL it holds the job's advisory lock,
    on SQLite its claim is in the job's row."""
    engine = create_engine(settings.effective_database_url())
    try:
        with engine.connect() as server:
            if engine.dialect.name == "postgresql":
                server.execute(select(func.pg_advisory_lock(job_lock_id("sessions-purge"))))
            else:
                now = datetime.now(UTC)  # (the command runs on the system clock)
                server.execute(insert(JobRunRow).values(
                    name="sessions-purge", next_due_at=now, running_since=now))
                server.commit()
            refused = cli.run("jobs", "run", "sessions-purge", "--data-dir",
                              settings.data_dir, env=database_env(settings))
    finally:
        engine.dispose()
    assert refused.code == 1, refused
    assert "job sessions-purge is running elsewhere; not started again" in refused.stderr
    assert jobs_events(settings) == [("jobs:run", "cli", "failed", "sessions-purge", None,
                                      JOB_RUNNING)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_unknown_job_is_refused_without_being_echoed(
        cli: Cli, settings: Settings, initialized: bootstrap.InitResult) -> None:
    result = cli.invoke("jobs", "run", "pat.buyer@example.test", "--data-dir",
                        settings.data_dir)
    assert result.code == 2, result
    assert "no job has that name (sellervault jobs list)" in result.stderr
    assert "pat.buyer" not in result.output


def test_retention_run_dry_run_counts_and_changes_nothing(
        cli: Cli, settings: Settings, initialized: bootstrap.InitResult) -> None:
    from sellervault.audit.auditor import Auditor
    from sellervault.records import service as records
    from sellervault.records.spapi import map_order, validate_order
    from sellervault.records.synthetic import synthetic_orders

    runtime = bootstrap.open_runtime(settings)
    try:  # synthetic orders shipped in January 2026: their PII is past its 30 days
        records.ingest(runtime, Auditor(runtime.audit, bootstrap.cli_actor()), "acme",
                       [map_order(validate_order(o)) for o in synthetic_orders(3)])
    finally:
        runtime.close()
    args, env = ("--data-dir", settings.data_dir), database_env(settings)
    preview = cli.run("retention", "run", "--dry-run", "--json", *args, env=env)
    assert preview.code == 0, preview
    assert preview.json() == {"pii_removed": 3, "orders_removed": 0, "held": 0,
                              "without_pii_expiry": 0, "tombstones_removed": 0,
                              "dry_run": True}
    again = cli.run("retention", "run", "--dry-run", *args, env=env)
    assert "would erase the buyer PII of 3 order(s)" in again.stdout  # nothing changed
    ran = cli.run("retention", "run", *args, env=env)
    assert ran.code == 0 and ran.stdout.strip() == "job order-retention: success, count 3"


def test_a_restore_is_refused_while_a_server_runs_and_no_server_starts_during_one(
        cli: Cli, settings: Settings, initialized: bootstrap.InitResult,
        tmp_path: Path) -> None:
    """A restore would replace the database under a running server (which would serve the
    restored rows before the erasures since are applied again): refused, nothing changed;
    once the server has stopped, the same restore goes through."""
    args, env = ("--data-dir", settings.data_dir), database_env(settings)
    backup_file = tmp_path / "vault.age"
    with _serving(cli, settings, initialized):
        assert cli.run("backup", "--out", backup_file, *args, env=env).code == 0
        refused = cli.run("restore", backup_file, *args, env=env)
        assert refused.code == 2, refused
        assert maintenance.IN_USE in refused.stderr
        runtime = bootstrap.open_runtime(settings)
        try:
            with runtime.store.transaction() as session:
                assert session.scalar(select(func.count()).select_from(EventRow).where(
                    EventRow.action == "backups:restore")) == 0
        finally:
            runtime.close()
    with maintenance.restoring(settings):  # (a restore at work, as it holds its claim)
        started = cli.run("serve", *args, "--port", "1", env=env)
        assert started.code == 1 and maintenance.RESTORE_RUNNING in started.stderr
    restored = cli.run("restore", backup_file, *args, env=env)
    assert restored.code == 0, restored


def test_backup_and_restore_keep_what_retention_erased(
        cli: Cli, settings: Settings, initialized: bootstrap.InitResult,
        tmp_path: Path) -> None:
    """Back up, let retention erase the orders' PII, restore: their PII stays erased."""
    from sellervault.audit.auditor import Auditor
    from sellervault.records import service as records
    from sellervault.records.errors import OrderErasedError
    from sellervault.records.spapi import map_order, validate_order
    from sellervault.records.synthetic import synthetic_orders

    orders = list(synthetic_orders(2))
    runtime = bootstrap.open_runtime(settings)
    try:  # (shipped in January 2026: past their 30 days)
        records.ingest(runtime, Auditor(runtime.audit, bootstrap.cli_actor()), "acme",
                       [map_order(validate_order(o)) for o in orders])
    finally:
        runtime.close()
    args, env = ("--data-dir", settings.data_dir), database_env(settings)
    backup_file = tmp_path / "vault.age"
    made = cli.run("backup", "--out", backup_file, *args, env=env)
    assert made.code == 0, made
    assert f"backup written to {backup_file}" in made.stdout
    assert cli.run("retention", "run", *args, env=env).code == 0
    restored = cli.run("restore", backup_file, *args, env=env)
    assert restored.code == 0, restored
    assert "1 erasure(s) made since applied again" in restored.stdout
    runtime = bootstrap.open_runtime(settings)
    try:
        with pytest.raises(OrderErasedError):
            runtime.store.call(records.reveal, runtime,
                               Auditor(runtime.audit, bootstrap.cli_actor()), "acme",
                               orders[0]["AmazonOrderId"], "fulfillment")
    finally:
        runtime.close()
    missing = cli.run("restore", tmp_path / "nothing.age", *args, env=env)
    assert missing.code == 2 and "no such backup file" in missing.stderr
