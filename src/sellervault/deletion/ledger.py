"""The erasure ledger: how key destruction reaches the backups.

Every erasure (a deletion's keys destroyed and rows deleted, a tenant erased, retention's PII
removed or orders removed) is appended, with an id of its own, to a file beside the root
key, ``keys/erasures.jsonl``, before its transaction commits, and the transaction records
that id in the database (``erasures_applied``). A database restored from a backup taken
earlier lacks the ids of the erasures since: at its first start (``bootstrap.open_runtime``)
every entry of the file whose id the database lacks is applied again (``reapply``) before
anything is served, so the keys destroyed since the backup are destroyed again and the rows
deleted since are deleted again: a restore never brings deleted PII back. The file is never
part of a backup (``store.backups`` leaves ``keys/`` out), and must not be restored from one:
it is the record of what was erased.

It fails closed: a database holding ids the file does not (the file missing, cut short, an
older copy, another vault's) does not start (``ErasureLedgerError``), since whatever was
erased after the file's last entry would otherwise come back unnoticed.

Write-ahead, not after the commit: an entry whose transaction then rolls back is applied at
the next start all the same, which only does early what the erasure was going to do (a
deletion is resumed until it completes; a retention run finds the same orders again). An
erasure committed but missing from the file cannot happen.

The same file, by the same rules, holds the vault's obligations (``deletion.obligations``):
deletion requests filed, cancelled or completed, restrictions placed or lifted, legal holds
placed or released. A restore does not undo them either: at the start, the rows are made
again as the entries say, or their state moved on, in the file's order and in the same
transaction as the erasures (an ``obligations:reapply`` event each). An entry of an erasure
has no ``kind`` (lines written before obligations were read as before); an obligation's
names its kind.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import SYSTEM_ACTOR, Outcome, TargetType
from sellervault.config import Settings
from sellervault.deletion import obligations
from sellervault.deletion.errors import ErasureLedgerError
from sellervault.deletion.models import ErasureApplied
from sellervault.records import erasure, lifetimes, tombstones
from sellervault.runtime import Runtime
from sellervault.store.upsert import insert_into


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
    tombstones: list[list[str] | str] = field(default_factory=list)
    """The deleted orders' tombstones (``records.tombstones``: [hex digest, expiry], not
    ids), so that after a restore a re-sync cannot bring them back either."""


Entry = Erasure | obligations.Obligation


def path_of(settings: Settings) -> Path:
    return settings.root_key_file.parent / "erasures.jsonl"


def record(settings: Settings, session: Session, entry: Entry) -> None:
    """Append ``entry`` (durably), and its id to the database in the caller's transaction:
    call it once nothing but the commit is left to fail."""
    entry_id = secrets.token_hex(16)
    fields = asdict(entry) if isinstance(entry, Erasure) else obligations.to_json(entry)
    line = (json.dumps({"id": entry_id, **fields}, separators=(",", ":"),
                       sort_keys=True) + "\n").encode()
    descriptor = os.open(path_of(settings), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # (processes of this host append in turn)
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    _mark_applied(session, [entry_id])


def _mark_applied(session: Session, entry_ids: list[str]) -> None:
    """The ids, each once: an erasure in flight while another process starting applied it
    (written ahead, it looked missing) commits all the same."""
    session.execute(insert_into(session, cast(Table, ErasureApplied.__table__))
                    .values([{"id": entry_id} for entry_id in entry_ids])
                    .on_conflict_do_nothing(index_elements=["id"]))


def reapply(rt: Runtime) -> int:
    """Apply every entry whose id the database lacks (a database restored from a backup
    taken before it, or an entry whose transaction rolled back); the number applied, with
    an ``erasures:reapply`` event if any. ``ErasureLedgerError`` if the database holds ids
    the file does not."""
    path = path_of(rt.settings)
    entries: list[tuple[str, Entry]] = []
    if path.exists():
        with path.open("rb") as ledger:
            for number, line in enumerate(ledger, start=1):
                if line.strip():
                    entries.append(_parse(path, number, line))
    with rt.store.snapshot() as connection:
        applied = set(connection.execute(select(ErasureApplied.id)).scalars())
    unknown = applied - {entry_id for entry_id, _ in entries}
    if unknown:
        raise ErasureLedgerError(
            f"{path} lacks {len(unknown)} entries (erasures, requests, restrictions, holds) "
            "this database has: it is missing, older than the database, or another vault's; "
            "the vault does not start, as what was erased since could come back "
            "(docs/operations.md, section 11)")
    missing = [(entry_id, entry) for entry_id, entry in entries if entry_id not in applied]
    if not missing:
        return 0
    with rt.store.transaction() as session:  # (two processes starting at once: both apply,
        # idempotently; each id is recorded once)
        auditor = Auditor(rt.audit, SYSTEM_ACTOR)
        for _, entry in missing:
            if isinstance(entry, Erasure):
                _apply(rt, session, entry)
            else:
                _apply_obligation(rt, session, auditor, entry)
        _mark_applied(session, [entry_id for entry_id, _ in missing])
        erasures = sum(isinstance(entry, Erasure) for _, entry in missing)
        if erasures:
            auditor.record(session, Action.ERASURES_REAPPLY, Outcome.SUCCESS,
                           target_type=TargetType.ORDER, count=erasures)
    return len(missing)


def _apply_obligation(rt: Runtime, session: Session, auditor: Auditor,
                      entry: obligations.Obligation) -> None:
    """The entry applied, with an ``obligations:reapply`` event naming the row and the kind
    (none if the database was there already)."""
    applied = obligations.apply(session, entry, rt.clock.now())
    if applied is not None:
        auditor.record(session, Action.OBLIGATIONS_REAPPLY, Outcome.SUCCESS,
                       tenant_id=applied.tenant_id, target_type=entry.kind.target,
                       target_id=entry.row_id, criteria=entry.kind.name, buyer=applied.buyer)


def _parse(path: Path, number: int, line: bytes) -> tuple[str, Entry]:
    """One entry, its shape checked (``ErasureLedgerError``, naming the line, if it is not an
    entry this version wrote or reads): an obligation if it names a kind, else an erasure."""
    try:
        fields = json.loads(line)
        entry_id = fields.pop("id")
        if not isinstance(entry_id, str):
            raise ValueError("not an entry")
        if "kind" in fields:
            return entry_id, obligations.from_json(fields)
        entry = Erasure(**fields)
        if not (isinstance(entry.tenant, str)
                and all(isinstance(i, str) for i in (*entry.data_keys, *entry.orders,
                                                     *entry.pii_of))):
            raise ValueError("not an entry")
        for tombstone in entry.tombstones:  # (its shape only: no clock needed)
            _tombstone(tombstone, datetime(2000, 1, 1, tzinfo=UTC))
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ErasureLedgerError(
            f"{path}, line {number}: not a ledger entry this version reads; the vault does "
            "not start (docs/operations.md, section 11)") from None
    return entry_id, entry


def tombstone_entry(tombstone: tombstones.Tombstone) -> list[str]:
    """A tombstone as an entry holds it: [hex digest, ISO expiry]."""
    return [tombstone.digest.hex(), tombstone.expires_at.isoformat()]


def _tombstone(held: str | list[str], now: datetime) -> tombstones.Tombstone:
    """A tombstone of an entry: [hex digest, ISO expiry], or the bare hex digest an earlier
    version wrote, given the longest life an order can have had left (18 months from now)."""
    if isinstance(held, str):
        return tombstones.Tombstone(bytes.fromhex(held), lifetimes.order_expiry(now))
    digest, expires_at = held
    expiry = datetime.fromisoformat(expires_at)
    if expiry.tzinfo is None:
        raise ValueError("an expiry without its time zone")
    return tombstones.Tombstone(bytes.fromhex(digest), expiry)


def _apply(rt: Runtime, session: Session, entry: Erasure) -> None:
    if entry.tenant_keys:  # (a tenant the backup did not know yet stays erased too)
        rt.keyring.destroy_tenant_keys(session, entry.tenant)
        erasure.delete_tenant_orders(session, entry.tenant)
        tombstones.forget_tenant(session, entry.tenant)
        return
    if entry.data_keys:
        rt.keyring.destroy_data_keys(session, entry.tenant, entry.data_keys)
    erasure.delete_orders(session, entry.orders)
    erasure.remove_pii(session, entry.pii_of, rt.clock.now())
    now = rt.clock.now()
    tombstones.bury(session, entry.tenant, [_tombstone(held, now) for held in entry.tombstones],
                    now)
