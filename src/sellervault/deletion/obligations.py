"""The vault's obligations in the erasure ledger: what a restore must not silently undo.

A restore from a backup taken before would otherwise drop every deletion request filed since
(its 72-hour deadline then passes with no alert), every restriction placed since (the
buyer's orders read again) and every legal hold placed since (retention then erases the held
order), and bring back what was cancelled, lifted or released since. So each of these
changes is written to the erasure ledger (``deletion.ledger``) before its transaction
commits, with an id the transaction records, exactly as an erasure is; a start re-creates
the rows, or moves their state on, for the entries the database lacks.

An entry is a row as its table holds it, the columns its kind names (``KINDS``): never more
than the table keeps, so never an email (a buyer is its blind-index digest and pseudonym);
the free text (a request's ``requested_by``, a restriction's or hold's ``reason``) and a
marketplace order id are the register's own, as the certificate and the register keep them.

Applied, an entry only ever moves a row forward: a row is created if it is absent, a state
is set only on a row that has not moved past it (a request is never taken back from
completed or cancelled; a lift or release never undone), so that applying an entry twice,
or one whose transaction rolled back, does no harm. A request's execution itself (executing,
its steps) is not an entry: the erasures are (the ledger's own), and a request filed since
the backup whose execution had begun but not completed comes back pending, to be executed
again (its deadline alerts go on meanwhile); see docs/operations.md, section 11."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Integer, LargeBinary, String, Text, select
from sqlalchemy.orm import Session

from sellervault.audit.events import TargetType
from sellervault.deletion.models import CertificateRow, DeletionRequest, LegalHold
from sellervault.records import erasure
from sellervault.records.models import Restriction
from sellervault.store.base import Base
from sellervault.store.types import UTCDateTime

_PROGRESS = {"pending": 0, "executing": 1, "completed": 2, "cancelled": 2}
"""How far a request's status (``deletion.requests``) has moved: completed and cancelled are
both final."""
_FINAL = 2
_VERIFIED = "verified"
"""The step before the certificate (``deletion.execution.VERIFIED``, which imports this)."""


@dataclass(frozen=True)
class Kind:
    name: str
    model: type[Base]
    columns: tuple[str, ...]
    """The row's columns the entry holds (its id first)."""
    target: TargetType


REQUEST_FILED = Kind("request-filed", DeletionRequest, (
    "id", "scope", "tenant_id", "amazon_order_id", "buyer_digest", "buyer", "requested_by",
    "return_data", "return_key", "return_key_id", "received_at", "deadline", "created_by",
    "created_at"), TargetType.DELETION_REQUEST)
REQUEST_STATE = Kind("request-state", DeletionRequest, (
    "id", "status", "step", "executed_by", "started_at", "completed_at", "cancelled_by",
    "cancelled_at", "return_approved_by", "return_approved_at", "orders", "data_keys",
    "data_key_ids", "tenant_keys", "rows_deleted", "return_sha256", "returned",
    "verification"), TargetType.DELETION_REQUEST)
"""A request cancelled, its return approved, or completed: its state as it then was."""
RESTRICTION_PLACED = Kind("restriction-placed", Restriction, (
    "id", "tenant_id", "buyer_digest", "buyer", "reason", "restricted_by", "created_at"),
    TargetType.RESTRICTION)
RESTRICTION_LIFTED = Kind("restriction-lifted", Restriction, ("id", "lifted_by", "lifted_at"),
                          TargetType.RESTRICTION)
HOLD_PLACED = Kind("hold-placed", LegalHold, (
    "id", "tenant_id", "amazon_order_id", "reason", "held_by", "held_until", "created_at"),
    TargetType.LEGAL_HOLD)
HOLD_RELEASED = Kind("hold-released", LegalHold, ("id", "released_by", "released_at"),
                     TargetType.LEGAL_HOLD)
KINDS = {kind.name: kind for kind in (REQUEST_FILED, REQUEST_STATE, RESTRICTION_PLACED,
                                      RESTRICTION_LIFTED, HOLD_PLACED, HOLD_RELEASED)}


@dataclass(frozen=True)
class Obligation:
    """One entry: its kind and the row's values (as Python values, the table's types)."""

    kind: Kind
    row: dict[str, Any]

    @property
    def row_id(self) -> str:
        return str(self.row["id"])


def of(kind: Kind, row: Base) -> Obligation:
    """The entry of ``row`` (flushed: as the transaction is about to commit it)."""
    return Obligation(kind, {name: getattr(row, name) for name in kind.columns})


def to_json(entry: Obligation) -> dict[str, Any]:
    """The entry's fields in the ledger's line: times as ISO 8601 with their offset, bytes
    as hex."""
    def value(held: Any) -> Any:
        if isinstance(held, datetime):
            return held.isoformat()
        return held.hex() if isinstance(held, bytes) else held
    return {"kind": entry.kind.name, "row": {k: value(v) for k, v in entry.row.items()}}


def from_json(fields: dict[str, Any]) -> Obligation:
    """An entry read back, every column checked against its table's type (``ValueError``
    or ``TypeError``: not an entry this version wrote)."""
    kind = KINDS[fields.pop("kind")]
    row = fields.pop("row")
    if fields or not isinstance(row, dict) or set(row) != set(kind.columns):
        raise ValueError("not an obligation entry")
    table = kind.model.__table__.columns
    entry = Obligation(kind, {name: _value(table[name], row[name]) for name in kind.columns})
    if kind is REQUEST_STATE and entry.row["status"] not in _PROGRESS:
        raise ValueError("not a request's status")
    return entry


def _value(column: Any, held: Any) -> Any:
    if held is None:
        if not column.nullable or column.primary_key:
            raise ValueError("a required column is empty")
        return None
    kind = column.type
    if isinstance(kind, UTCDateTime):
        moment = datetime.fromisoformat(held)
        if moment.tzinfo is None:
            raise ValueError("a time without its time zone")
        return moment
    if isinstance(kind, LargeBinary):
        return bytes.fromhex(held)
    expected = {Boolean: bool, Integer: int, String: str, Text: str}
    for column_type, python_type in expected.items():
        if isinstance(kind, column_type):
            if type(held) is not python_type:
                raise TypeError("a value of another type than its column's")
            return held
    raise TypeError("a column of a type entries do not hold")


@dataclass(frozen=True)
class Applied:
    """What applying an entry changed, for its event (ids and a pseudonym only)."""

    tenant_id: str
    buyer: str | None


def apply(session: Session, entry: Obligation, now: datetime) -> Applied | None:
    """The entry applied, moving its row forward only (None: there was nothing to do)."""
    appliers = {REQUEST_FILED: _file, REQUEST_STATE: _request_state,
                RESTRICTION_PLACED: _restrict, RESTRICTION_LIFTED: _lift,
                HOLD_PLACED: _hold, HOLD_RELEASED: _release}
    return appliers[entry.kind](session, entry, now)


def _file(session: Session, entry: Obligation, now: datetime) -> Applied | None:
    if session.get(DeletionRequest, entry.row_id) is not None:
        return None
    row = DeletionRequest(**entry.row, status="pending", warned=0)
    session.add(row)
    session.flush()
    return Applied(row.tenant_id, row.buyer)


def _request_state(session: Session, entry: Obligation, now: datetime) -> Applied | None:
    """The request's state moved on. A completion whose certificate the database lacks (a
    backup taken before it was signed, or a transaction that rolled back after writing
    ahead) comes back executing at its verified step, with its counts: the
    ``deletion-executions`` job signs its certificate, rather than leave a request completed
    with none for good."""
    row = session.get(DeletionRequest, entry.row_id)
    if row is None or _PROGRESS[row.status] == _FINAL \
            or _PROGRESS[entry.row["status"]] < _PROGRESS[row.status]:
        return None
    values = dict(entry.row)
    if values["status"] == "completed" and session.scalar(
            select(CertificateRow.id).where(CertificateRow.request_id == row.id)) is None:
        values.update(status="executing", step=_VERIFIED, completed_at=None)
    for name, value in values.items():
        setattr(row, name, value)
    session.flush()
    return Applied(row.tenant_id, row.buyer)


def _restrict(session: Session, entry: Obligation, now: datetime) -> Applied | None:
    """The restriction, unless it is there, or the buyer is restricted by another since (an
    entry whose transaction rolled back: at most one active restriction per buyer)."""
    if session.get(Restriction, entry.row_id) is not None or session.scalar(
            select(Restriction.id).where(Restriction.tenant_id == entry.row["tenant_id"],
                                         Restriction.buyer_digest == entry.row["buyer_digest"],
                                         Restriction.lifted_at.is_(None))) is not None:
        return None
    row = Restriction(**entry.row)
    session.add(row)
    session.flush()
    return Applied(row.tenant_id, row.buyer)


def _lift(session: Session, entry: Obligation, now: datetime) -> Applied | None:
    row = session.get(Restriction, entry.row_id)
    if row is None or row.lifted_at is not None:
        return None
    row.lifted_by, row.lifted_at = entry.row["lifted_by"], entry.row["lifted_at"]
    session.flush()
    return Applied(row.tenant_id, row.buyer)


def _hold(session: Session, entry: Obligation, now: datetime) -> Applied | None:
    """The hold, and its order's effective hold (an order the restored database lacks, one
    ingested since the backup, has none to set: the hold row stays the record)."""
    if session.get(LegalHold, entry.row_id) is not None:
        return None
    row = LegalHold(**entry.row)
    session.add(row)
    session.flush()
    erasure.hold(session, row.tenant_id, row.amazon_order_id,
                 effective_hold(session, row.tenant_id, row.amazon_order_id, now))
    return Applied(row.tenant_id, None)


def _release(session: Session, entry: Obligation, now: datetime) -> Applied | None:
    row = session.get(LegalHold, entry.row_id)
    if row is None or row.released_at is not None:
        return None
    row.released_by, row.released_at = entry.row["released_by"], entry.row["released_at"]
    session.flush()
    erasure.hold(session, row.tenant_id, row.amazon_order_id,
                 effective_hold(session, row.tenant_id, row.amazon_order_id, now))
    return Applied(row.tenant_id, None)


def effective_hold(session: Session, tenant_id: str, amazon_order_id: str,
                   now: datetime) -> datetime | None:
    """The order's hold as its holds now stand: its latest active hold's end, or none."""
    ends = session.scalars(select(LegalHold.held_until).where(
        LegalHold.tenant_id == tenant_id, LegalHold.amazon_order_id == amazon_order_id,
        LegalHold.released_at.is_(None), LegalHold.held_until > now))
    return max(ends, default=None)
