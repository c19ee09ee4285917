"""The erasure ledger: how key destruction reaches the backups.

Every erasure (a deletion's keys destroyed and rows deleted, retention's PII removed or
orders removed) is appended to a file beside the root key, ``keys/erasures.jsonl``, before
its transaction commits, and the transaction moves the database's ``erasure_ledger``
position to the end of that entry. A database restored from a backup taken earlier holds an
older position: at its first start (``bootstrap.open_runtime``) every entry after it is
applied again (``reapply``) before anything is served, so the keys destroyed since the
backup are destroyed again and the rows deleted since are deleted again: a restore never
brings deleted PII back. The file is never part of a backup (``store.backups`` leaves
``keys/`` out), and must not be restored from one: it is the record of what was erased.

Write-ahead, not after the commit: an entry whose transaction then rolls back is applied at
the next start all the same, which only does early what the erasure was going to do (a
deletion is resumed until it completes; a retention run finds the same orders again). An
erasure committed but missing from the file cannot happen.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import SYSTEM_ACTOR, Outcome, TargetType
from sellervault.config import Settings
from sellervault.deletion.models import ErasureLedger
from sellervault.records import erasure
from sellervault.runtime import Runtime

LEDGER_ID = 1


@dataclass(frozen=True)
class Erasure:
    """One erasure as the ledger holds it: ids only, never PII."""

    tenant: str
    tenant_keys: bool = False
    """Every key of the tenant destroyed and every order of it deleted."""
    data_keys: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)
    """Order rows deleted."""
    pii_of: list[str] = field(default_factory=list)
    """Orders whose PII was removed (their rows kept)."""


def path_of(settings: Settings) -> Path:
    return settings.root_key_file.parent / "erasures.jsonl"


def record(settings: Settings, session: Session, entry: Erasure) -> None:
    """Append ``entry`` (durably) and move the position, in the caller's transaction."""
    line = (json.dumps(asdict(entry), separators=(",", ":"), sort_keys=True) + "\n").encode()
    path = path_of(settings)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # (processes of this host append in turn)
        os.write(descriptor, line)
        os.fsync(descriptor)
        end = os.fstat(descriptor).st_size
    finally:
        os.close(descriptor)
    session.execute(update(ErasureLedger).where(ErasureLedger.id == LEDGER_ID).values(
        position=case((ErasureLedger.position < end, end), else_=ErasureLedger.position)))


def reapply(rt: Runtime) -> int:
    """Apply every entry after the database's position (a database restored from a backup
    taken before them); the number applied, with an ``erasures:reapply`` event if any."""
    path = path_of(rt.settings)
    if not path.exists():
        return 0
    with rt.store.snapshot() as connection:
        position = connection.execute(select(ErasureLedger.position).where(
            ErasureLedger.id == LEDGER_ID)).scalar_one()
    size = path.stat().st_size
    if size <= position:
        return 0
    with path.open("rb") as ledger:
        ledger.seek(position)
        entries = [Erasure(**json.loads(line)) for line in ledger.read(size - position)
                   .splitlines() if line.strip()]
    with rt.store.transaction() as session:
        for entry in entries:
            _apply(rt, session, entry)
        session.execute(update(ErasureLedger).where(ErasureLedger.id == LEDGER_ID)
                        .values(position=size))
        Auditor(rt.audit, SYSTEM_ACTOR).record(
            session, Action.ERASURES_REAPPLY, Outcome.SUCCESS, target_type=TargetType.ORDER,
            count=len(entries))
    return len(entries)


def _apply(rt: Runtime, session: Session, entry: Erasure) -> None:
    if entry.tenant_keys:  # (a tenant the backup did not know yet stays erased too)
        rt.keyring.destroy_tenant_keys(session, entry.tenant)
        erasure.delete_tenant_orders(session, entry.tenant)
        return
    if entry.data_keys:
        rt.keyring.destroy_data_keys(session, entry.tenant, entry.data_keys)
    erasure.delete_orders(session, entry.orders)
    erasure.remove_pii(session, entry.pii_of, rt.clock.now())


def position(session: Session) -> int:
    """Where the database stands in the ledger (for a backup's manifest)."""
    found: Any = session.scalar(select(ErasureLedger.position).where(
        ErasureLedger.id == LEDGER_ID))
    return int(found or 0)
