"""Writing and verifying the security log.

``record`` appends an event inside the caller's transaction, so an operation and its event
commit together or not at all. ``verify`` walks the chain and names the first bad event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from sellervault.audit.chain import GENESIS, HASHED_FIELDS, event_mac, macs_equal
from sellervault.audit.events import Actor, Outcome, SecurityEvent
from sellervault.audit.models import ChainHead, EventRow
from sellervault.crypto.keyring import Keyring
from sellervault.store.engine import Store

LOG_KEY = "security-log"
HEAD_ID = 1
VERIFY_BATCH = 5000


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Built once (no per-call expression building or cache-key generation); Core statements on the
# two tables, so appending an event costs no ORM identity-map or unit-of-work bookkeeping.
_EVENTS = cast(Table, EventRow.__table__)
_HEADS = cast(Table, ChainHead.__table__)
_LOCK_HEAD = (select(_HEADS.c.seq, _HEADS.c.hash).where(_HEADS.c.id == HEAD_ID)
              .with_for_update())
_INSERT_EVENT = insert(_EVENTS)
_INSERT_HEAD = insert(_HEADS)
_MOVE_HEAD = (update(_HEADS).where(_HEADS.c.id == HEAD_ID)
              .values(seq=bindparam("new_seq"), hash=bindparam("new_hash")))


def record(session: Session, keyring: Keyring, event: SecurityEvent) -> int:
    """Append ``event`` to the chain; returns its sequence number."""
    log_key = keyring.system_key(session, LOG_KEY)
    session.flush()  # the caller's pending changes go first, as an ORM query would autoflush
    db = session.connection()
    head = db.execute(_LOCK_HEAD).first()
    head_seq, head_hash = (0, GENESIS) if head is None else (head.seq, head.hash)
    fields = event.fields()
    fields["seq"] = head_seq + 1
    fields["occurred_at"] = _now_iso()
    mac = event_mac(log_key, head_hash, fields)
    db.execute(_INSERT_EVENT, {**fields, "prev_hash": head_hash, "hash": mac})
    if head is None:
        db.execute(_INSERT_HEAD, {"id": HEAD_ID, "seq": fields["seq"], "hash": mac})
    else:
        db.execute(_MOVE_HEAD, {"new_seq": fields["seq"], "new_hash": mac})
    seq: int = fields["seq"]
    return seq


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    events: int
    first_bad_seq: int | None = None
    problem: str | None = None


def verify(session: Session, keyring: Keyring) -> VerifyResult:
    """Check every MAC, every link, the sequence and the head; stop at the first bad event."""
    log_key = keyring.system_key(session, LOG_KEY)
    head = session.get(ChainHead, HEAD_ID)
    prev_hash = GENESIS
    expected_seq = 1
    last_seq = 0
    while True:
        rows = session.scalars(
            select(EventRow).where(EventRow.seq >= expected_seq).order_by(EventRow.seq)
            .limit(VERIFY_BATCH)
        ).all()
        if not rows:
            break
        for row in rows:
            if row.seq != expected_seq:
                return VerifyResult(False, last_seq, expected_seq,
                                    f"event {expected_seq} is missing")
            if not macs_equal(row.prev_hash, prev_hash):
                return VerifyResult(False, last_seq, row.seq,
                                    f"event {row.seq} does not link to event {row.seq - 1}")
            fields = {name: getattr(row, name) for name in HASHED_FIELDS}
            if not macs_equal(event_mac(log_key, prev_hash, fields), row.hash):
                return VerifyResult(False, last_seq, row.seq, f"event {row.seq} was altered")
            prev_hash = row.hash
            last_seq = row.seq
            expected_seq += 1
    if last_seq == 0:
        # `init` records events before anyone can act, so an empty log was emptied.
        return VerifyResult(False, 0, 1, "the log is empty: an initialised vault always "
                                         "holds its init events")
    head_seq = head.seq if head is not None else 0
    if head_seq != last_seq or (head is not None and not macs_equal(head.hash, prev_hash)):
        return VerifyResult(False, last_seq, last_seq + 1,
                            f"the log ends at event {last_seq} but its head says {head_seq}")
    return VerifyResult(True, last_seq)


def count_events(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(EventRow)) or 0


def list_events(session: Session, after_seq: int = 0, limit: int = 100) -> list[EventRow]:
    return list(session.scalars(
        select(EventRow).where(EventRow.seq > after_seq).order_by(EventRow.seq).limit(limit)
    ))


class Auditor:
    """Records the events of one request or command, and knows whether one was committed.

    The web layer writes a fallback event for a request only when no service committed one,
    so every request ends with exactly one event, success or failure.
    """

    def __init__(self, keyring: Keyring, actor: Actor) -> None:
        self.keyring = keyring
        self.actor = actor
        self.committed = False

    def _mark_committed(self, _session: Session) -> None:
        self.committed = True

    def record(self, session: Session, action: str, outcome: Outcome, **fields: Any) -> int:
        seq = record(session, self.keyring, SecurityEvent(action, outcome, self.actor, **fields))
        sa_event.listen(session, "after_commit", self._mark_committed, once=True)
        return seq


def read_events(store: Store, auditor: Auditor, after_seq: int = 0,
                limit: int = 100) -> list[dict[str, Any]]:
    """A page of the log for a reader; the read itself is an event."""
    with store.transaction() as session:
        rows = list_events(session, after_seq=after_seq, limit=limit)
        auditor.record(session, "audit:read", Outcome.SUCCESS, target_type="security_event",
                       count=len(rows))
        return [{**{name: getattr(row, name) for name in HASHED_FIELDS}, "hash": row.hash}
                for row in rows]
