"""Bootstrap operations on a data directory: init, open for serving, offline log verify.

These are the only operations that touch the data directory directly (the rest of the CLI
is an HTTPS client), and each still writes a security event.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from sellervault.access.actions import Action
from sellervault.accounts import service as accounts
from sellervault.accounts.keys import ACCOUNT_SECRETS, CREDENTIAL_PEPPER
from sellervault.audit import proofs, verification
from sellervault.audit.auditor import Auditor
from sellervault.audit.checkpoints import CHECKPOINT_KEY
from sellervault.audit.errors import LogError
from sellervault.audit.events import SYSTEM_ACTOR, Actor, Channel, Outcome, TargetType
from sellervault.audit.verification import VerifyResult
from sellervault.audit.writing import LOG_KEY
from sellervault.clock import SYSTEM_CLOCK, Clock
from sellervault.config import Settings
from sellervault.counters.factory import COUNTERS_KEY
from sellervault.crypto.keyring import Keyring
from sellervault.crypto.provider import LocalKeyProvider
from sellervault.crypto.pseudonyms import PSEUDONYM_KEY
from sellervault.crypto.tls_identity import generate_self_signed
from sellervault.deletion import ledger
from sellervault.deletion import retention as order_retention
from sellervault.deletion.certificates import CERTIFICATE_KEY
from sellervault.deletion.errors import ErasureLedgerError
from sellervault.jobs.registry import JOBS
from sellervault.jobs.runner import JobState, Runner, RunResult
from sellervault.monitoring import detectors
from sellervault.records.canaries import CANARY_SEED_KEY
from sellervault.runtime import Runtime
from sellervault.store import backups, maintenance, migrate
from sellervault.store.engine import Store

SYSTEM_KEYS = (LOG_KEY, CREDENTIAL_PEPPER, ACCOUNT_SECRETS, CHECKPOINT_KEY, COUNTERS_KEY,
               PSEUDONYM_KEY, CANARY_SEED_KEY, CERTIFICATE_KEY)
"""Every service-wide key (each wrapped by the root key, each for one use)."""


class BootstrapError(Exception):
    """The data directory is not in the state the command needs."""


@dataclass(frozen=True, slots=True)
class InitResult:
    admin_id: str
    totp_secret: str
    certificate: Path
    certificate_sha256: str | None
    recovery_codes: tuple[str, ...] = ()
    """The first administrator's, shown once."""


def cli_actor() -> Actor:
    return Actor(channel=Channel.CLI, source_ip="local")


def is_initialized(settings: Settings) -> bool:
    return settings.root_key_file.exists()


def init(settings: Settings, *, admin_email: str, admin_name: str, admin_password: str,
         clock: Clock = SYSTEM_CLOCK) -> InitResult:
    """Root key, TLS certificate, schema, and the first administrator; nothing else. The
    time comes from ``clock`` (the certificate's validity, and the runtime ``init`` works
    in), so a test can make a data directory at any moment."""
    if is_initialized(settings):
        raise BootstrapError(f"{settings.data_dir} is already initialised")
    accounts.check_new_person(email=admin_email, name=admin_name, password=admin_password,
                              min_length=settings.password_min_length)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(settings.data_dir, 0o700)
    created: list[Path] = []
    try:
        passphrase = settings.root_key_passphrase
        provider = LocalKeyProvider.create(settings.root_key_file,
                                           passphrase.get_secret_value() if passphrase else None)
        created.append(settings.root_key_file)
        fingerprint = None
        if settings.tls_cert_file is None and not settings.certificate_file.exists():
            fingerprint = generate_self_signed(settings.certificate_file,
                                               settings.certificate_key_file, clock=clock)
            created += [settings.certificate_file, settings.certificate_key_file]
        admin = _create_schema_and_admin(settings, provider, admin_email, admin_name,
                                         admin_password, clock)
    except BaseException:
        # A half-made data directory would block the next `init`; take back what we made.
        for path in created:
            path.unlink(missing_ok=True)
        raise
    return InitResult(admin.id, admin.totp_secret, settings.certificate_file, fingerprint,
                      admin.recovery_codes)


def _create_schema_and_admin(settings: Settings, provider: LocalKeyProvider, email: str,
                             name: str, password: str, clock: Clock) -> accounts.FirstAdmin:
    store = Store.from_url(settings.effective_database_url())
    try:
        migrate.upgrade(store.engine)
        runtime = Runtime(settings, store, Keyring(provider, clock), clock)
        auditor = Auditor(runtime.audit, cli_actor(), starts_chain=True)
        admin = accounts.create_first_admin(runtime, auditor, email=email, name=name,
                                            password=password)
        with store.transaction() as session:
            auditor.record(session, Action.SYSTEM_INIT, Outcome.SUCCESS,
                           target_type=TargetType.ACCOUNT, target_id=admin.id)
            # Every system key is made at init: the log's, the pepper's and the account
            # secrets' by the steps above (before the log could record them), the rest now.
            for key_name in SYSTEM_KEYS:
                runtime.keyring.system_key(session, key_name)
                auditor.record(session, Action.KEYS_CREATE_SYSTEM, Outcome.SUCCESS,
                               target_type=TargetType.SYSTEM_KEY, target_id=key_name)
        return admin
    finally:
        store.dispose()


def open_runtime(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> Runtime:
    """Open an initialised data directory, bringing the schema to the current version."""
    if not is_initialized(settings):
        raise BootstrapError(f"{settings.data_dir} is not initialised; run `sellervault init`")
    return _open(settings, clock)[0]


def _open(settings: Settings, clock: Clock, *, claim: bool = True) -> tuple[Runtime, int]:
    """``open_runtime``, and how many erasures it applied again (``deletion.ledger``: a
    database restored from a backup taken before them). The runtime holds a shared claim on
    the vault until it is closed (``store.maintenance``; ``claim`` False: the caller, a
    restore, holds it exclusively)."""
    try:
        held = maintenance.Claim(settings, exclusive=False) if claim else None
    except maintenance.MaintenanceError as exc:
        raise BootstrapError(str(exc)) from None
    try:
        runtime = Runtime.open(settings, clock, held)
    except BaseException:
        if held is not None:
            held.release()
        raise
    try:
        migrate.upgrade(runtime.store.engine)
        make_system_keys(runtime, Auditor(runtime.audit, SYSTEM_ACTOR))
        return runtime, ledger.reapply(runtime)
    except ErasureLedgerError as exc:
        runtime.close()
        raise BootstrapError(str(exc)) from None
    except BaseException:  # (its claim and connections with it)
        runtime.close()
        raise


def make_system_keys(runtime: Runtime, auditor: Auditor) -> list[str]:
    """The system keys that do not exist yet (``SYSTEM_KEYS``), made in one transaction, each
    a ``keys:create-system`` event, at every start (``open_runtime``): after an upgrade that
    brought a new key, it is born here, on the record (``init`` makes and records them all);
    the code that uses one only reads it. The names made; none when another process made
    them at the same moment."""
    with runtime.store.snapshot() as connection:  # (the usual case, nothing to make: no
        # write transaction, so a start never waits for a busy server's writers)
        if all(runtime.keyring.find_system_key(connection, name) is not None
               for name in SYSTEM_KEYS):
            return []
    try:
        with runtime.store.transaction() as session:
            made = [name for name in SYSTEM_KEYS
                    if runtime.keyring.make_system_key(session, name)]
            for name in made:
                auditor.record(session, Action.KEYS_CREATE_SYSTEM, Outcome.SUCCESS,
                               target_type=TargetType.SYSTEM_KEY, target_id=name)
    except IntegrityError:  # another process made them at the same moment (and said so)
        return []
    return made


def open_watched_runtime(settings: Settings) -> Runtime:
    """``open_runtime`` with the detectors reading this command's own events: a key rotated
    or a failed verification from the command line raises its alert as one made through
    the API would (``monitoring.detectors``). Closing the runtime lets them finish."""
    runtime = open_runtime(settings)
    detectors.attach(runtime)
    return runtime


def record_serve(runtime: Runtime) -> None:
    auditor = Auditor(runtime.audit, Actor(channel=Channel.SYSTEM, source_ip="local"))
    with runtime.store.transaction() as session:
        auditor.record(session, Action.SYSTEM_SERVE, Outcome.SUCCESS)


def prove_event(settings: Settings, seq: int) -> dict[str, Any]:
    """An inclusion proof of event ``seq`` against the latest checkpoint (``audit.proofs``);
    the reading is an ``audit:read`` event of the command line."""
    runtime = open_runtime(settings)
    try:
        proof = proofs.prove(runtime.store, seq)
        with runtime.store.transaction() as session:
            Auditor(runtime.audit, cli_actor()).record(
                session, Action.AUDIT_READ, Outcome.SUCCESS,
                target_type=TargetType.SECURITY_EVENT, target_id=str(seq), count=1)
        return proof
    finally:
        runtime.close()


def checkpoint_public_key(settings: Settings) -> str:
    """The checkpoint key's public half (PEM), for whoever checks proofs and checkpoints."""
    runtime = open_runtime(settings)
    try:
        return proofs.public_key_pem(runtime.store, runtime.keyring)
    finally:
        runtime.close()


def verify_log(settings: Settings,
               on_batch: Callable[[int], None] | None = None) -> VerifyResult:
    """Verify the chain (from one snapshot: a running server goes on meanwhile), then record
    that a verification ran and how it ended. A log whose head or key is gone cannot take
    that event; the result says why."""
    runtime = open_watched_runtime(settings)
    try:
        result = verification.verify(runtime.store, runtime.keyring, on_batch,
                                     settings.checkpoint_file)
        result = verification.checkpoints_overdue(result, runtime.clock.now())
        auditor = Auditor(runtime.audit, cli_actor())
        try:
            with runtime.store.transaction() as session:
                auditor.record(session, Action.AUDIT_VERIFY,
                               Outcome.SUCCESS if result.ok else Outcome.FAILED,
                               target_type=TargetType.SECURITY_EVENT, count=result.events)
        except LogError as exc:
            if result.ok:  # (the head or key vanished after the walk: report that instead)
                return VerifyResult(False, result.events, result.events + 1, str(exc))
        return result
    finally:
        runtime.close()


def rotate_root_key(settings: Settings) -> int:
    """New root key version; every tenant and system key is re-wrapped under it, then older
    root versions are removed from the key file. Run it with the server stopped: a running
    server holds the root keyring it loaded at start."""
    runtime = open_watched_runtime(settings)
    try:
        with runtime.store.transaction() as session:
            version = runtime.keyring.rotate_root(session)
            Auditor(runtime.audit, cli_actor()).record(
                session, Action.KEYS_ROTATE_ROOT, Outcome.SUCCESS, target_type=TargetType.ROOT_KEY,
                target_id=str(version))
        runtime.keyring.provider.retire_versions_before(version)
        return version
    finally:
        runtime.close()


def rotate_tenant_key(settings: Settings, tenant_id: str) -> int:
    """New key-encryption key for one tenant; its data keys are re-wrapped, data untouched.
    Safe while the server runs: a server looks up a tenant's active key version on every use,
    and ingests of the tenant wait for the rotation (``Keyring.rotate_tenant_key``)."""
    runtime = open_watched_runtime(settings)
    try:
        with runtime.store.transaction() as session:
            version = runtime.keyring.rotate_tenant_key(session, tenant_id)
            Auditor(runtime.audit, cli_actor()).record(
                session, Action.KEYS_ROTATE_TENANT, Outcome.SUCCESS, tenant_id=tenant_id,
                target_type=TargetType.TENANT_KEY, target_id=str(version))
        return version
    finally:
        runtime.close()


def list_jobs(settings: Settings) -> list[JobState]:
    """Where each periodic job stands, read from the database the servers share; the read is
    a ``jobs:list`` event."""
    runtime = open_runtime(settings)
    try:
        states = Runner(runtime, JOBS, cli_actor()).states()
        with runtime.store.transaction() as session:
            Auditor(runtime.audit, cli_actor()).record(
                session, Action.JOBS_LIST, Outcome.SUCCESS, target_type=TargetType.JOB,
                count=len(states))
        return states
    finally:
        runtime.close()


def run_job(settings: Settings, name: str, attempts: int | None = None) -> RunResult:
    """Run one job now, in this process, as the CLI (``Runner.run_now``). Safe while servers
    run: it is claimed like a scheduled run, so it never overlaps one."""
    runtime = open_watched_runtime(settings)
    try:
        return Runner(runtime, JOBS, cli_actor(), attempts=attempts).run_now(name)
    finally:
        runtime.close()


def preview_retention(settings: Settings) -> order_retention.RetentionReport:
    """What the ``order-retention`` job would remove now (changing nothing)."""
    runtime = open_watched_runtime(settings)
    try:
        return order_retention.run(runtime, dry_run=True)
    finally:
        runtime.close()


@dataclass(frozen=True)
class Restored:
    manifest: backups.Manifest
    reapplied: int
    """Erasures made since the backup, applied again (``deletion.ledger``)."""


def make_backup(settings: Settings, out: Path, also_to: list[str] | None = None,
                clock: Clock = SYSTEM_CLOCK) -> backups.Manifest:
    """An encrypted backup of an initialised vault (``store.backups``), recorded as a
    ``backups:create`` event (in the database, after the snapshot: the next backup has it)."""
    runtime = open_watched_runtime(settings)
    try:
        manifest = backups.backup(settings, out, clock.now(), also_to)
        with runtime.store.transaction() as session:
            Auditor(runtime.audit, Actor(Channel.CLI)).record(
                session, Action.BACKUPS_CREATE, Outcome.SUCCESS, count=len(manifest.files))
        return manifest
    finally:
        runtime.close()


def restore_backup(settings: Settings, backup_file: Path,
                   clock: Clock = SYSTEM_CLOCK) -> Restored:
    """Put a backup in place (refused while anything has the vault open:
    ``store.maintenance``), then open it: migrations, and the
    erasures made since the backup applied again, before anything is served; recorded as a
    ``backups:restore`` event in the restored log."""
    if not settings.root_key_file.exists():
        raise BootstrapError(f"{settings.root_key_file} is missing: a backup holds no keys; "
                             "put the vault's keys/ directory in place first")
    with maintenance.restoring(settings):  # nothing else has the vault open, and nothing
        # opens it until the erasures since the backup are applied again
        manifest = backups.restore(settings, backup_file)
        runtime, reapplied = _open(settings, clock, claim=False)
        try:
            with runtime.store.transaction() as session:
                Auditor(runtime.audit, Actor(Channel.CLI)).record(
                    session, Action.BACKUPS_RESTORE, Outcome.SUCCESS, count=reapplied)
            return Restored(manifest, reapplied)
        finally:
            runtime.close()


DEMO_TENANT = "demo-seller"
DEMO_ORDERS = 200


def seed_demo(runtime: Runtime, orders: int = DEMO_ORDERS) -> None:
    """A synthetic tenant with clearly fake orders (its first ingest seeds its canaries:
    ``records.canaries``)."""
    from sellervault.records import service as records
    from sellervault.records.spapi import map_order, validate_order
    from sellervault.records.synthetic import synthetic_orders

    auditor = Auditor(runtime.audit, cli_actor())
    batch = [map_order(validate_order(raw)) for raw in synthetic_orders(orders)]
    records.ingest(runtime, auditor, DEMO_TENANT, batch)
