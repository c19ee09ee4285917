"""Writing and verifying the security log.

``record`` appends an event inside the caller's transaction, so an operation and its event
commit together or not at all. ``verify`` walks the chain and names the first bad event.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from sellervault.audit.chain import GENESIS, HASHED_FIELDS, event_mac, macs_equal
from sellervault.audit.events import Actor, Outcome, SecurityEvent
from sellervault.audit.models import ChainHead, EventRow
from sellervault.crypto.keyring import Keyring
from sellervault.store.engine import Store, after_commit, core_connection
from sellervault.store.prepared import Prepared

LOG_KEY = "security-log"
HEAD_ID = 1
VERIFY_BATCH = 5000


def _now_iso() -> str:
    """UTC, microseconds, "Z": 2026-11-29T04:12:13.123456Z (isoformat is strftime's format
    here, and faster)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


# Built once (no per-call expression building or cache-key generation); Core statements on the
# two tables, so appending an event costs no ORM identity-map or unit-of-work bookkeeping.
_EVENTS = cast(Table, EventRow.__table__)
_HEADS = cast(Table, ChainHead.__table__)
_LOCK_HEAD = (select(_HEADS.c.seq, _HEADS.c.hash).where(_HEADS.c.id == HEAD_ID)
              .with_for_update())
_INSERT_EVENT = Prepared(insert(_EVENTS).values(
    {column.name: bindparam(column.name) for column in _EVENTS.columns}))
_INSERT_HEAD = insert(_HEADS)
_MOVE_HEAD = (update(_HEADS).where(_HEADS.c.id == HEAD_ID)
              .values(seq=bindparam("new_seq"), hash=bindparam("new_hash")))
# Compare-and-swap: moves the head only if it is still exactly the one this process last saw.
_MOVE_HEAD_FROM = Prepared(_MOVE_HEAD.where(_HEADS.c.seq == bindparam("old_seq"),
                                            _HEADS.c.hash == bindparam("old_hash")))

# The head this process last wrote, per database. Only a guess: it saves reading the head
# when no other writer (thread or process) has moved it since, and the compare-and-swap above
# checks it against the database before anything is written.
_last_heads: weakref.WeakKeyDictionary[Engine, tuple[int, str]] = weakref.WeakKeyDictionary()


def record(session: Session | Connection, keyring: Keyring, event: SecurityEvent) -> int:
    """Append ``event`` to the chain, in the caller's transaction; its sequence number."""
    log_key = keyring.system_key(session, LOG_KEY)
    db = core_connection(session)  # a session's pending changes go first
    fields = event.fields()
    fields["occurred_at"] = _now_iso()
    engine = db.engine
    guess = _last_heads.get(engine)
    mac = ""
    moved = False
    if guess is not None:
        fields["seq"] = guess[0] + 1
        prev_hash = guess[1]
        mac = event_mac(log_key, prev_hash, fields)
        moved = _MOVE_HEAD_FROM.execute(db, {"new_seq": fields["seq"], "new_hash": mac,
                                             "old_seq": guess[0], "old_hash": prev_hash}) == 1
    if not moved:  # first event of this process, or another writer moved the head
        head = db.execute(_LOCK_HEAD).first()
        head_seq, prev_hash = (0, GENESIS) if head is None else (head.seq, head.hash)
        fields["seq"] = head_seq + 1
        mac = event_mac(log_key, prev_hash, fields)
        if head is None:
            db.execute(_INSERT_HEAD, {"id": HEAD_ID, "seq": fields["seq"], "hash": mac})
        else:
            db.execute(_MOVE_HEAD, {"new_seq": fields["seq"], "new_hash": mac})
    _INSERT_EVENT.execute(db, {**fields, "prev_hash": prev_hash, "hash": mac})
    seq: int = fields["seq"]
    _last_heads[engine] = (seq, mac)
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

    def _mark_committed(self) -> None:
        self.committed = True

    def record(self, session: Session | Connection, action: str, outcome: Outcome,
               **fields: Any) -> int:
        seq = record(session, self.keyring, SecurityEvent(action, outcome, self.actor, **fields))
        after_commit(session, self._mark_committed)
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
