"""Verifying the security log: every MAC, every link, the sequence and the head.

``verify`` reads one snapshot and names the first bad event: an edited, removed, reordered
or inserted event, a head that does not match the last event, events past the head, or a
chain that does not begin with ``init``'s first event (a log emptied and started again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from sellervault.audit.chain import CHAINED_FIELDS, GENESIS, event_mac, macs_equal
from sellervault.audit.writing import EVENTS, HEAD_ID, HEADS, LOG_KEY
from sellervault.crypto.keyring import Keyring
from sellervault.store.engine import Store

VERIFY_BATCH = 5000


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    events: int
    first_bad_seq: int | None = None
    problem: str | None = None


# The event `init` writes first (channel, action, outcome, actor): the first administrator's
# creation, from the command line, by nobody. A chain that does not begin with it was started
# again after the log was emptied (no other writer ever records that event with no actor).
INIT_EVENT = ("cli", "accounts:create", "success", None)
_EVENTS_FROM = select(EVENTS).where(EVENTS.c.seq >= bindparam("first"),
                                     EVENTS.c.seq <= bindparam("last")).order_by(EVENTS.c.seq)
_READ_HEAD = select(HEADS.c.seq, HEADS.c.hash).where(HEADS.c.id == HEAD_ID)
_EVENTS_AFTER = select(func.count()).select_from(EVENTS).where(
    EVENTS.c.seq > bindparam("last"))


def verify(store: Store, keyring: Keyring,
           on_batch: Callable[[int], None] | None = None) -> VerifyResult:
    """Check the head, every MAC, every link and the sequence, and that the chain begins
    with init's first event; stop at the first bad event.

    It reads one snapshot (``Store.snapshot``), up to the head as it was then: events
    appended meanwhile by a running server are neither seen nor waited for, and no write
    waits for the walk. ``on_batch`` is called with the last verified sequence number after
    each batch (progress)."""
    with store.snapshot() as connection:
        log_key = keyring.find_system_key(connection, LOG_KEY)
        head = connection.execute(_READ_HEAD).first()
        if head is None or log_key is None:
            missing = "head" if head is None else "key"
            return VerifyResult(False, 0, 1, f"the log's {missing} is missing: an initialised "
                                             "vault always has one")
        if head.seq < 1:
            return VerifyResult(False, 0, 1, "the log is empty: an initialised vault always "
                                             "holds its init events")
        result, last_hash = _walk(connection, log_key, head.seq, on_batch)
        if result is not None:
            return result
        if not macs_equal(head.hash, last_hash):
            return VerifyResult(False, head.seq, head.seq + 1,
                                f"the log ends at event {head.seq} but its head says otherwise")
        after = connection.execute(_EVENTS_AFTER, {"last": head.seq}).scalar_one()
        if after:
            return VerifyResult(False, head.seq, head.seq + 1,
                                f"the log ends at event {head.seq + after} but its head says "
                                f"{head.seq}")
    return VerifyResult(True, head.seq)


def _walk(connection: Connection, log_key: bytes, last: int,
          on_batch: Callable[[int], None] | None) -> tuple[VerifyResult | None, str]:
    """The first bad event among 1..``last`` (None when all of them are good), and the hash
    of the last good one."""
    prev_hash = GENESIS
    expected = 1
    while expected <= last:
        rows = connection.execute(_EVENTS_FROM, {"first": expected, "last": min(
            last, expected + VERIFY_BATCH - 1)}).all()
        if not rows:
            break
        for row in rows:
            problem = _problem(row, expected, prev_hash, log_key)
            if problem is not None:
                return VerifyResult(False, expected - 1, expected, problem), prev_hash
            prev_hash = row.hash
            expected += 1
        if on_batch is not None:
            on_batch(expected - 1)
    if expected <= last:
        return VerifyResult(False, expected - 1, expected,
                            f"the log ends at event {expected - 1} but its head says "
                            f"{last}"), prev_hash
    return None, prev_hash


def _problem(row: Any, expected: int, prev_hash: str, log_key: bytes) -> str | None:
    if row.seq != expected:
        return f"event {expected} is missing"
    if not macs_equal(row.prev_hash, prev_hash):
        return f"event {row.seq} does not link to event {row.seq - 1}"
    fields = {name: getattr(row, name) for name in CHAINED_FIELDS}
    if not macs_equal(event_mac(log_key, prev_hash, fields), row.hash):
        return f"event {row.seq} was altered"
    if row.seq == 1 and (row.channel, row.action, row.outcome, row.actor_id) != INIT_EVENT:
        return "event 1 is not the init event the log begins with: the log was started again"
    return None


