"""The security log's hash chain, from the attacker's side.

Each event's MAC is HMAC-SHA256, under the security-log key (wrapped by the root key), of
the previous event's MAC and the event's own fields; a one-row head holds the last sequence
number and MAC. ``audit.verification.verify`` walks the chain and names the first bad event.

The attacker here can write the database with SQL but cannot read the keys: every edit,
deletion, reordering or forged hash must make ``verify`` fail at the first bad ``seq``.
The one truncation the MACs cannot show (the newest events and the head rewritten together)
is caught by a signed checkpoint
(``test_truncation_with_a_rewritten_head_is_detected_by_the_checkpoint``).

Only ``init`` starts a chain (its first event creates the head). A wiped log (events and head
deleted, or the head reset) is never started again by a writer, which would hide everything
before it: every later write fails closed, and ``verify`` requires the chain to begin with
the events ``init`` writes. ``verify`` reads one snapshot, up to the head it read, so it runs
beside a live server without a false alarm and without holding up its writers.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from typing import Any

import pytest
from sqlalchemy import text

from sellervault import bootstrap
from sellervault.access.actions import Action
from sellervault.audit import checkpoints, reading, verification, writing
from sellervault.audit.auditor import Auditor
from sellervault.audit.chain import GENESIS, HASHED_FIELDS, event_mac
from sellervault.audit.errors import (
    ChainAlreadyStartedError,
    ChainHeadMissingError,
    LogKeyMissingError,
)
from sellervault.audit.events import Actor, Channel, Outcome, Reason, SecurityEvent, TargetType
from sellervault.audit.log import AuditLog
from sellervault.audit.verification import VerifyResult
from sellervault.config import Settings
from sellervault.runtime import Runtime

# -- the MAC itself --------------------------------------------------------------------------

KEY = bytes(range(32))
FIELDS: dict[str, Any] = {
    "seq": 7, "occurred_at": "2025-11-12T08:00:00.000000Z", "channel": "api",
    "action": "orders:reveal", "outcome": "denied", "actor_id": "acc_1", "tenant_id": "acme",
    "target_type": "order", "target_id": "902-3159896-1390916", "source_ip": "203.0.113.9",
    "request_id": "req-1", "purpose": "marketing", "status": 403, "count": None,
    "reason": "purpose_not_permitted",
}


def append(rt: Runtime, auditor: Auditor, action: str, outcome: Outcome, **fields: Any) -> int:
    """``Auditor.append``, run to its end from this (blocking) test."""
    return rt.store.call(auditor.append, rt.store, action, outcome, **fields)



def test_mac_is_deterministic_and_independent_of_field_order() -> None:
    reordered = dict(reversed(list(FIELDS.items())))
    assert event_mac(KEY, GENESIS, FIELDS) == event_mac(KEY, GENESIS, reordered)
    assert len(event_mac(KEY, GENESIS, FIELDS)) == 64


def test_mac_covers_the_key_and_the_previous_event() -> None:
    mac = event_mac(KEY, GENESIS, FIELDS)
    assert event_mac(bytes(32), GENESIS, FIELDS) != mac
    assert event_mac(KEY, "1" * 64, FIELDS) != mac


@pytest.mark.parametrize("name", HASHED_FIELDS)
def test_mac_covers_every_field(name: str) -> None:
    changed = {**FIELDS, name: "x" if FIELDS[name] != "x" else "y"}
    assert event_mac(KEY, GENESIS, changed) != event_mac(KEY, GENESIS, FIELDS)


def test_a_later_field_is_covered_when_set_and_absent_when_not() -> None:
    """Events written before ``criteria`` existed keep their MAC (it is not in the body while
    unset); once set, setting, changing or clearing it changes the MAC."""
    unset = event_mac(KEY, GENESIS, FIELDS)
    assert event_mac(KEY, GENESIS, {**FIELDS, "criteria": None}) == unset
    with_criteria = event_mac(KEY, GENESIS, {**FIELDS, "criteria": "postal-code"})
    assert with_criteria != unset
    assert event_mac(KEY, GENESIS, {**FIELDS, "criteria": "buyer-email"}) != with_criteria
    body = json.dumps({**{name: FIELDS.get(name) for name in HASHED_FIELDS},
                       "criteria": "postal-code"}, sort_keys=True, separators=(",", ":"))
    assert with_criteria == hmac.new(KEY, GENESIS.encode() + b"\n" + body.encode(),
                                     hashlib.sha256).hexdigest()


def test_mac_is_not_a_plain_hash() -> None:
    """Without the log key nobody can compute it, not even from the published format."""
    body = json.dumps({name: FIELDS.get(name) for name in HASHED_FIELDS}, sort_keys=True,
                      separators=(",", ":")).encode()
    assert event_mac(KEY, GENESIS, FIELDS) != hashlib.sha256(
        GENESIS.encode() + b"\n" + body).hexdigest()


# -- a real chain in a real database ---------------------------------------------------------

def verify(rt: Runtime) -> VerifyResult:
    return verification.verify(rt.store, rt.keyring)


def attack(rt: Runtime, sql: str, **params: Any) -> None:
    """The attacker's side: plain SQL straight into the database, no service in between."""
    with rt.store.engine.begin() as connection:
        connection.execute(text(sql), params)


def rows(rt: Runtime) -> list[dict[str, Any]]:
    with rt.store.engine.connect() as connection:
        return [dict(row._mapping) for row in
                connection.execute(text("SELECT * FROM security_events ORDER BY seq"))]


def head(rt: Runtime) -> tuple[int, str]:
    with rt.store.engine.connect() as connection:
        found = connection.execute(text("SELECT seq, hash FROM security_event_head")).one()
    return found.seq, found.hash


@pytest.fixture
def chain(runtime: Runtime) -> list[int]:
    """Six events of one API caller on top of init's own; returns their seq numbers."""
    auditor = Auditor(runtime.audit, Actor(Channel.API, actor_id="acc_0123456789abcdef",
                                             source_ip="203.0.113.9", request_id="req-42"))
    seqs = []
    with runtime.store.transaction() as session:
        for action, outcome, fields in [
            (Action.ORDERS_READ, Outcome.SUCCESS, {"tenant_id": "acme", "status": 200}),
            (Action.ORDERS_REVEAL, Outcome.DENIED, {
                "tenant_id": "acme", "purpose": "marketing", "target_type": TargetType.ORDER,
                "status": 403, "target_id": "902-3159896-1390916",
                "reason": Reason.PURPOSE_NOT_PERMITTED}),
            (Action.ORDERS_SEARCH, Outcome.SUCCESS, {"tenant_id": "acme", "count": 3}),
            (Action.ORDERS_REVEAL, Outcome.SUCCESS, {
                "tenant_id": "acme", "purpose": "fulfillment", "target_type": TargetType.ORDER,
                "status": 200, "target_id": "902-3159896-1390916"}),
            (Action.SESSION_CREATE, Outcome.DENIED, {"status": 401,
                                                     "reason": Reason.INVALID_CREDENTIALS}),
        ]:
            seqs.append(auditor.record(session, action, outcome, **fields))
    with runtime.store.transaction() as session:
        seqs.append(auditor.record(session, Action.AUDIT_READ, Outcome.SUCCESS, count=6))
    return seqs


def assert_fails_at(rt: Runtime, seq: int, problem: str) -> None:
    result = verify(rt)
    assert not result.ok
    assert result.first_bad_seq == seq, result
    assert result.problem is not None and problem in result.problem, result
    assert result.events == seq - 1  # the events before the first bad one are vouched for


def test_untouched_chain_verifies(runtime: Runtime, chain: list[int]) -> None:
    assert verify(runtime) == VerifyResult(True, chain[-1])
    with runtime.store.transaction() as session:
        assert reading.count_events(session) == chain[-1]
    assert head(runtime) == (chain[-1], rows(runtime)[-1]["hash"])


def test_chain_starts_at_genesis_and_links_every_event(runtime: Runtime,
                                                       chain: list[int]) -> None:
    events = rows(runtime)
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    assert events[0]["prev_hash"] == GENESIS
    for previous, event in itertools.pairwise(events):
        assert event["prev_hash"] == previous["hash"]


EDITS: list[tuple[str, Any]] = [
    ("outcome", "success"),  # a denied reveal made to look allowed
    ("actor_id", "acc_fedcba9876543210"),  # blamed on someone else
    ("source_ip", "198.51.100.1"),
    ("occurred_at", "2020-01-01T00:00:00.000000Z"),
    ("status", 200),
    ("purpose", "fulfillment"),
    ("reason", None),
    ("action", "orders:read"),
]


def test_a_later_field_set_on_an_old_event_is_detected(runtime: Runtime,
                                                        chain: list[int]) -> None:
    attack(runtime, "UPDATE security_events SET criteria = 'postal-code' WHERE seq = :seq",
           seq=chain[2])
    assert_fails_at(runtime, chain[2], "altered")


def test_edited_field_is_detected(runtime: Runtime, chain: list[int]) -> None:
    """Each edit fails verification at the edited event; putting the original value back
    makes the chain verify again (so it is the edit, and only the edit, that is caught)."""
    denied_reveal = chain[1]
    original = rows(runtime)[denied_reveal - 1]
    for column, value in EDITS:
        assert original[column] != value
        statement = f"UPDATE security_events SET {column} = :value WHERE seq = :seq"
        attack(runtime, statement, value=value, seq=denied_reveal)
        assert_fails_at(runtime, denied_reveal, "altered")
        attack(runtime, statement, value=original[column], seq=denied_reveal)
        assert verify(runtime).ok, column


def test_relinked_event_is_detected(runtime: Runtime, chain: list[int]) -> None:
    attack(runtime, "UPDATE security_events SET prev_hash = :genesis WHERE seq = :seq",
           genesis=GENESIS, seq=chain[2])
    assert_fails_at(runtime, chain[2], "does not link")


def test_deleted_event_in_the_middle_is_detected(runtime: Runtime, chain: list[int]) -> None:
    attack(runtime, "DELETE FROM security_events WHERE seq = :seq", seq=chain[1])
    assert_fails_at(runtime, chain[1], "missing")


def test_deleted_last_event_is_detected_by_the_head(runtime: Runtime, chain: list[int]) -> None:
    attack(runtime, "DELETE FROM security_events WHERE seq = :seq", seq=chain[-1])
    assert_fails_at(runtime, chain[-1], "head")


def test_deleted_head_is_detected(runtime: Runtime, chain: list[int]) -> None:
    attack(runtime, "DELETE FROM security_event_head")
    assert not verify(runtime).ok


def test_rewritten_head_alone_is_detected(runtime: Runtime, chain: list[int]) -> None:
    """A head pointing back while the events are still there does not match the chain."""
    events = rows(runtime)
    attack(runtime, "UPDATE security_event_head SET seq = :seq, hash = :hash",
           seq=events[-2]["seq"], hash=events[-2]["hash"])
    assert not verify(runtime).ok


def test_an_emptied_log_is_detected(runtime: Runtime, chain: list[int]) -> None:
    """Wiping every event and resetting the head leaves an empty log, which an initialised
    vault never has (init records its own events first)."""
    attack(runtime, "DELETE FROM security_events")
    attack(runtime, "UPDATE security_event_head SET seq = 0, hash = :hash", hash=GENESIS)
    result = verify(runtime)
    assert not result.ok and result.first_bad_seq == 1 and "empty" in (result.problem or "")


def test_truncation_with_a_rewritten_head_is_detected_by_the_checkpoint(
        runtime: Runtime, chain: list[int]) -> None:
    """Deleting the newest events AND rewriting the head row to the last kept event's seq
    and hash leaves a shorter chain consistent in every respect the MACs can show (each MAC,
    each link, the head). The signed checkpoint covering the deleted events is what catches
    it (``audit.checkpoints``; the rest of the tamper suite: tests/audit/test_checkpoints.py).

    What the head alone catches: deleting the last event without touching the head
    (test_deleted_last_event_is_detected_by_the_head)."""
    checkpoints.write_checkpoint(runtime)
    events = rows(runtime)
    keep = len(events) - 1
    last = events[keep - 1]
    attack(runtime, "DELETE FROM security_events WHERE seq > :seq", seq=last["seq"])
    attack(runtime, "UPDATE security_event_head SET seq = :seq, hash = :hash",
           seq=last["seq"], hash=last["hash"])
    result = verify(runtime)
    assert not result.ok and result.problem is not None
    assert "its newest events were removed" in result.problem, result


def test_swapped_events_are_detected(runtime: Runtime, chain: list[int]) -> None:
    first, second = chain[1], chain[3]
    attack(runtime, "UPDATE security_events SET seq = -1 WHERE seq = :seq", seq=first)
    attack(runtime, "UPDATE security_events SET seq = :new WHERE seq = :old",
           new=first, old=second)
    attack(runtime, "UPDATE security_events SET seq = :new WHERE seq = -1", new=second)
    assert_fails_at(runtime, first, "does not link")


def _forge(prev_hash: str, event: dict[str, Any], algorithm: str) -> str:
    """What an attacker without the log key can compute, knowing the format from the source."""
    body = json.dumps({name: event.get(name) for name in HASHED_FIELDS}, sort_keys=True,
                      separators=(",", ":")).encode()
    message = prev_hash.encode() + b"\n" + body
    if algorithm == "sha256":
        return hashlib.sha256(message).hexdigest()
    return hmac.new(b"", message, hashlib.sha256).hexdigest()  # a guessed (empty) key


def _rechain_from(rt: Runtime, start: int, algorithm: str) -> None:
    """Recompute prev_hash and hash from ``start`` to the end, and the head, as forgeries."""
    events = rows(rt)
    prev_hash = next((e["hash"] for e in events if e["seq"] == start - 1), GENESIS)
    for event in events:
        if event["seq"] < start:
            continue
        forged = _forge(prev_hash, event, algorithm)
        attack(rt, "UPDATE security_events SET prev_hash = :prev, hash = :hash "
                   "WHERE seq = :seq", prev=prev_hash, hash=forged, seq=event["seq"])
        prev_hash = forged
    attack(rt, "UPDATE security_event_head SET seq = :seq, hash = :hash",
           seq=events[-1]["seq"], hash=prev_hash)


@pytest.mark.parametrize("algorithm", ["sha256", "hmac-with-guessed-key"])
def test_edit_with_recomputed_hashes_is_detected(runtime: Runtime, chain: list[int],
                                                 algorithm: str) -> None:
    """The attacker edits an event, then recomputes its hash and every later link and the
    head as consistently as they can without the log key."""
    denied_reveal = chain[1]
    attack(runtime, "UPDATE security_events SET outcome = 'success' WHERE seq = :seq",
           seq=denied_reveal)
    _rechain_from(runtime, denied_reveal, algorithm)
    assert_fails_at(runtime, denied_reveal, "altered")


def test_forged_event_appended_is_detected(runtime: Runtime, chain: list[int]) -> None:
    last = rows(runtime)[-1]
    forged = {**last, "seq": last["seq"] + 1, "action": "audit:read", "outcome": "success",
              "actor_id": "acc_fedcba9876543210", "prev_hash": last["hash"]}
    forged["hash"] = _forge(last["hash"], forged, "sha256")
    columns = ", ".join(forged)
    attack(runtime, f"INSERT INTO security_events ({columns}) "
                    f"VALUES ({', '.join(':' + name for name in forged)})", **forged)
    attack(runtime, "UPDATE security_event_head SET seq = :seq, hash = :hash",
           seq=forged["seq"], hash=forged["hash"])
    assert_fails_at(runtime, forged["seq"], "altered")


def test_first_bad_event_is_named_when_several_are_bad(runtime: Runtime,
                                                       chain: list[int]) -> None:
    attack(runtime, "UPDATE security_events SET count = 99 WHERE seq = :seq", seq=chain[4])
    attack(runtime, "DELETE FROM security_events WHERE seq = :seq", seq=chain[5])
    attack(runtime, "UPDATE security_events SET outcome = 'success' WHERE seq = :seq",
           seq=chain[1])
    assert_fails_at(runtime, chain[1], "altered")


def test_verification_spans_batches(runtime: Runtime, chain: list[int],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain is read in batches; a gap on a batch boundary is still a gap."""
    monkeypatch.setattr(verification, "VERIFY_BATCH", 2)
    assert verify(runtime) == VerifyResult(True, chain[-1])
    boundary = 5  # batches are 1-2, 3-4, 5-6, ...
    attack(runtime, "DELETE FROM security_events WHERE seq = :seq", seq=boundary)
    assert_fails_at(runtime, boundary, "missing")


def test_appending_after_verification_keeps_the_chain_valid(runtime: Runtime,
                                                            chain: list[int]) -> None:
    assert verify(runtime).ok
    auditor = Auditor(runtime.audit, Actor(Channel.CLI, source_ip="local"))
    with runtime.store.transaction() as session:
        seq = auditor.record(session, Action.AUDIT_VERIFY, Outcome.SUCCESS, count=chain[-1])
    assert seq == chain[-1] + 1
    assert verify(runtime) == VerifyResult(True, seq)


# -- a wiped log is never started again ------------------------------------------------------

WIPES = {
    "events and head deleted": ["DELETE FROM security_events", "DELETE FROM security_event_head"],
    "head deleted": ["DELETE FROM security_event_head"],
    "events deleted, head reset": ["DELETE FROM security_events",
                                   "UPDATE security_event_head SET seq = 0, hash = :genesis"],
}


@pytest.mark.parametrize("wipe", WIPES)
def test_a_wiped_log_refuses_every_later_event(runtime: Runtime, chain: list[int],
                                               wipe: str) -> None:
    """The reproduction: wipe the log, then any write (a request's event, the failed
    verification's own event). Before, the writer started a fresh chain at 1 and `verify`
    called the log intact; now every writer refuses and nothing is written."""
    for sql in WIPES[wipe]:
        attack(runtime, sql, genesis=GENESIS)
    left = rows(runtime)
    auditor = Auditor(runtime.audit, Actor(Channel.API, actor_id="acc_0123456789abcdef"))
    with pytest.raises(ChainHeadMissingError), runtime.store.transaction() as session:
        auditor.record(session, Action.ORDERS_READ, Outcome.SUCCESS)
    with pytest.raises(ChainHeadMissingError):
        append(runtime, auditor, Action.ORDERS_REVEAL, Outcome.SUCCESS, purpose="fulfillment")
    assert rows(runtime) == left
    assert not verify(runtime).ok


def test_a_wiped_log_fails_verification_in_the_cli_too(settings: Settings, runtime: Runtime,
                                                       chain: list[int]) -> None:
    """`audit verify` on a wiped log: a broken result (exit 1), not a crash, even though its
    own audit:verify event cannot be written."""
    attack(runtime, "DELETE FROM security_events")
    attack(runtime, "DELETE FROM security_event_head")
    result = bootstrap.verify_log(settings)
    assert not result.ok and result.first_bad_seq == 1
    assert "head is missing" in (result.problem or "")
    assert rows(runtime) == []


def test_a_chain_restarted_from_genesis_is_detected(runtime: Runtime, chain: list[int]) -> None:
    """What the old writer did after a wipe, done here on purpose: a new chain from genesis,
    every MAC valid. Verification refuses it because it does not begin with init's events."""
    attack(runtime, "DELETE FROM security_events")
    attack(runtime, "DELETE FROM security_event_head")
    event = SecurityEvent(Action.ORDERS_READ, Outcome.SUCCESS, Actor(Channel.API))
    with runtime.store.transaction() as session:
        assert writing.record(session, runtime.audit, event, starts_chain=True) == 1
    assert_fails_at(runtime, 1, "not the init event")


def test_only_one_chain_can_be_started(runtime: Runtime) -> None:
    event = SecurityEvent(Action.SYSTEM_INIT, Outcome.SUCCESS, Actor(Channel.CLI))
    before = rows(runtime)
    with pytest.raises(ChainAlreadyStartedError), runtime.store.transaction() as session:
        writing.record(session, runtime.audit, event, starts_chain=True)
    assert rows(runtime) == before


def test_the_chain_begins_with_the_event_init_writes(runtime: Runtime) -> None:
    first = rows(runtime)[0]
    assert (first["channel"], first["action"], first["outcome"], first["actor_id"]) == (
        verification.INIT_EVENT) == ("cli", "accounts:create", "success", None)


def test_only_the_first_event_is_required_to_be_inits(runtime: Runtime) -> None:
    """An init that died between its two transactions leaves accounts:create and then
    whatever came next: a log that verifies (requiring system:init second would make it
    unverifiable for ever, with no init to run again)."""
    attack(runtime, "DELETE FROM security_events")
    attack(runtime, "DELETE FROM security_event_head")
    with runtime.store.transaction() as session:
        writing.record(session, runtime.audit,
                     SecurityEvent(Action.ACCOUNTS_CREATE, Outcome.SUCCESS, Actor(Channel.CLI)),
                     starts_chain=True)
        writing.record(session, runtime.audit,
                     SecurityEvent(Action.SYSTEM_SERVE, Outcome.SUCCESS, Actor(Channel.SYSTEM)))
    assert verify(runtime) == VerifyResult(True, 2)


def test_a_missing_log_key_is_a_broken_log_not_a_new_key(runtime: Runtime,
                                                          chain: list[int]) -> None:
    """Verify reports it, and no writer makes a new key (whose MACs the earlier events would
    never verify with): every write refuses, as for a missing head."""
    attack(runtime, "DELETE FROM system_keys WHERE name = :name", name=writing.LOG_KEY)
    fresh = type(runtime.keyring)(runtime.keyring.provider, runtime.clock)  # nothing cached
    result = verification.verify(runtime.store, fresh)
    assert not result.ok and "key is missing" in (result.problem or "")
    auditor = Auditor(AuditLog(fresh, runtime.clock),
                      Actor(Channel.API, actor_id="acc_0123456789abcdef"))
    with pytest.raises(LogKeyMissingError), runtime.store.transaction() as session:
        auditor.record(session, Action.ORDERS_READ, Outcome.SUCCESS)
    with pytest.raises(LogKeyMissingError):
        append(runtime, auditor, Action.ORDERS_READ, Outcome.SUCCESS)
    with runtime.store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM system_keys WHERE name = :name"),
                                  {"name": writing.LOG_KEY}).scalar() == 0


# -- verification beside a running server ----------------------------------------------------

def _append_in_another_thread(rt: Runtime, count: int) -> bool:
    """Append ``count`` events from another thread (its own connection); whether they were
    all committed within five seconds."""
    import threading

    done = threading.Event()

    def work() -> None:
        auditor = Auditor(rt.audit, Actor(Channel.API, actor_id="acc_0123456789abcdef"))
        for _ in range(count):
            append(rt, auditor, Action.ORDERS_READ, Outcome.SUCCESS, tenant_id="acme")
        done.set()

    threading.Thread(target=work, daemon=True).start()
    return done.wait(timeout=5)


def test_verification_reads_one_snapshot_and_lets_writers_go_on(
        runtime: Runtime, chain: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Between two batches of the walk, another connection appends and commits events. They
    commit at once (on SQLite the walk holds no write lock: before, they waited for the whole
    walk), and the walk neither sees them nor calls the log broken (on PostgreSQL it read the
    head first and the events later: "ends at event N but its head says M")."""
    monkeypatch.setattr(verification, "VERIFY_BATCH", 2)
    head_before = head(runtime)[0]
    appended: list[bool] = []
    result = verification.verify(runtime.store, runtime.keyring,
                          on_batch=lambda _seq: appended.append(
                              _append_in_another_thread(runtime, 3)) if not appended else None)
    assert appended == [True]
    assert result == VerifyResult(True, head_before)
    assert verify(runtime) == VerifyResult(True, head_before + 3)


def test_verification_beside_parallel_writers(runtime: Runtime, chain: list[int]) -> None:
    """Real parallel connections appending all the time (on PostgreSQL the reported case: 10
    broken results in 10 runs): every verification is intact."""
    import threading

    stop = threading.Event()
    written = [0, 0]

    def writer(slot: int) -> None:
        auditor = Auditor(runtime.audit, Actor(Channel.API, actor_id=f"acc_writer{slot}"))
        while not stop.is_set():
            append(runtime, auditor, Action.ORDERS_READ, Outcome.SUCCESS, tenant_id="acme")
            written[slot] += 1

    threads = [threading.Thread(target=writer, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    try:
        results = [verify(runtime) for _ in range(10)]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert sum(written) > 0
    assert all(result.ok for result in results), results
    assert verify(runtime) == VerifyResult(True, head(runtime)[0])
