"""audit.checkpoints and the checkpoint half of verification, from the attacker's side, on
SQLite and PostgreSQL.

The attacker writes the database with SQL (and, where said, the checkpoint file) but holds
neither the root key nor the checkpoint key. On an intact log, with checkpoints, verify
passes; each of these fails it, naming what happened: a truncated tail with a rewritten
head, a history rebuilt to the same size (even with valid MACs), a checkpoint edited,
forged, deleted or reordered, an old database restored (its checkpoints behind the file's),
and the file truncated or edited. The checkpoints themselves: one per run, empty intervals
included, numbered and chained, each signed, each also a line of the file (owner-only);
and one asked for whenever the chain grows by 1,000 events. The job signs only what it
authenticated (an event forged at the head, a gap), rebuilds a corrupt stored compact range
from the events, never dates a checkpoint before the last (a clock stepped back); verify
takes a checkpoint written during its walk for what it is, and names a bad file line.
"""

from __future__ import annotations

import json
import stat
import threading
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from sellervault.access.actions import Action
from sellervault.audit import checkpoints, merkle, verification
from sellervault.audit.auditor import Auditor
from sellervault.audit.chain import CHAINED_FIELDS, GENESIS, event_body, event_mac
from sellervault.audit.events import Actor, Channel, Outcome, SecurityEvent
from sellervault.audit.subscribers import CommittedEvent
from sellervault.audit.verification import VerifyResult
from sellervault.audit.writing import LOG_KEY
from sellervault.clock import ManualClock
from sellervault.runtime import Runtime


def verify(rt: Runtime) -> VerifyResult:
    return verification.verify(rt.store, rt.keyring, checkpoint_file=rt.settings.checkpoint_file)


def attack(rt: Runtime, sql: str, **params: Any) -> None:
    with rt.store.engine.begin() as connection:
        connection.execute(text(sql), params)


def table(rt: Runtime, name: str, order: str) -> list[dict[str, Any]]:
    with rt.store.engine.connect() as connection:
        return [dict(row._mapping) for row in
                connection.execute(text(f"SELECT * FROM {name} ORDER BY {order}"))]


def write_events(rt: Runtime, count: int) -> None:
    auditor = Auditor(rt.audit, Actor(Channel.API, actor_id="acc_0123456789abcdef",
                                      source_ip="203.0.113.9"))
    with rt.store.transaction() as session:
        for _ in range(count):
            auditor.record(session, Action.ORDERS_READ, Outcome.SUCCESS, tenant_id="acme",
                           status=200)


@pytest.fixture
def signed(runtime: Runtime, clock: ManualClock) -> Runtime:
    """A log with three checkpoints: after 5 more events, after 3 more, and one with none
    new (an empty interval)."""
    for count in (5, 3, 0):
        write_events(runtime, count)
        checkpoints.write_checkpoint(runtime)
        clock.advance(60)
    return runtime


def expect(rt: Runtime, words: str) -> None:
    result = verify(rt)
    assert not result.ok and result.problem is not None and words in result.problem, result


def test_an_intact_log_with_its_checkpoints_verifies(signed: Runtime) -> None:
    result = verify(signed)
    assert result.ok and result.checkpoints == 3, result


def test_each_run_signs_one_checkpoint_chained_to_the_last(signed: Runtime) -> None:
    rows = table(signed, "audit_checkpoints", "number")
    with signed.store.engine.connect() as connection:
        public_key = checkpoints.find_public_key(signed.keyring, connection)
    assert public_key is not None
    parsed = [checkpoints.Checkpoint.parse(row["statement"].encode()) for row in rows]
    assert [c.number for c in parsed] == [1, 2, 3]
    assert parsed[1].size == parsed[0].size + 3 and parsed[2].size == parsed[1].size
    assert parsed[0].previous is None
    for before, after in zip(rows, parsed[1:], strict=False):
        assert after.previous == checkpoints.statement_hash(before["statement"].encode())
    for row in rows:
        assert public_key.verifies(row["statement"].encode(), row["signature"])
    events = table(signed, "security_events", "seq")
    leaves = [merkle.leaf_hash(event_body({n: e[n] for n in CHAINED_FIELDS})) for e in events]
    assert parsed[0].root == merkle.root_of(leaves[:parsed[0].size]).hex()
    path = signed.settings.checkpoint_file
    assert [line["statement"] for line in checkpoints.read_file(path)] == [
        row["statement"] for row in rows]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_the_job_counts_the_events_it_newly_covers(runtime: Runtime) -> None:
    first = checkpoints.write_checkpoint(runtime)
    assert first > 0
    write_events(runtime, 4)
    assert checkpoints.write_checkpoint(runtime) == 4
    assert checkpoints.write_checkpoint(runtime) == 0


def test_a_truncated_tail_with_a_rewritten_head_is_detected(signed: Runtime) -> None:
    events = table(signed, "security_events", "seq")
    keep = events[-3]
    attack(signed, "DELETE FROM security_events WHERE seq > :seq", seq=keep["seq"])
    attack(signed, "UPDATE security_event_head SET seq = :seq, hash = :hash",
           seq=keep["seq"], hash=keep["hash"])
    expect(signed, "its newest events were removed")


def test_a_history_rebuilt_to_the_same_size_with_valid_macs_is_detected(
        signed: Runtime) -> None:
    """The strongest attacker short of the checkpoint key: one who holds the log key too
    rewrites an event and re-chains every MAC after it; the MACs and the head all agree,
    the signed root does not."""
    with signed.store.engine.connect() as connection:
        log_key = signed.keyring.find_system_key(connection, LOG_KEY)
    assert log_key is not None
    events = table(signed, "security_events", "seq")
    events[3]["status"] = 500
    prev = GENESIS
    for event in events:
        event["prev_hash"] = prev
        event["hash"] = prev = event_mac(log_key, prev, {n: event[n] for n in CHAINED_FIELDS})
        attack(signed, "UPDATE security_events SET status = :status, prev_hash = :p, "
               "hash = :h WHERE seq = :seq", status=event["status"], p=event["prev_hash"],
               h=event["hash"], seq=event["seq"])
    attack(signed, "UPDATE security_event_head SET hash = :hash", hash=prev)
    result = verify(signed)
    assert not result.ok and result.problem is not None
    assert "the log was rewritten" in result.problem and result.first_bad_seq == 1, result


def test_an_edited_checkpoint_is_detected(signed: Runtime) -> None:
    row = table(signed, "audit_checkpoints", "number")[1]
    statement = json.loads(row["statement"])
    statement["size"] -= 1
    forged = json.dumps(statement, sort_keys=True, separators=(",", ":"))
    attack(signed, "UPDATE audit_checkpoints SET statement = :s, tree_size = tree_size - 1 "
           "WHERE number = 2", s=forged)
    expect(signed, "checkpoint 2 is not signed by the checkpoint key")


def test_a_checkpoint_signed_with_another_key_is_detected(signed: Runtime) -> None:
    row = table(signed, "audit_checkpoints", "number")[2]
    attack(signed, "UPDATE audit_checkpoints SET signature = :sig WHERE number = 3",
           sig=Ed25519PrivateKey.generate().sign(row["statement"].encode()).hex())
    expect(signed, "checkpoint 3 is not signed by the checkpoint key")


def test_deleted_checkpoints_and_an_older_database_are_detected_by_the_file(
        signed: Runtime) -> None:
    """An old database restored: its events end where an earlier checkpoint did, and its
    checkpoints stop there; alone it verifies. The file, on other storage, remembers."""
    rows = table(signed, "audit_checkpoints", "number")
    first = json.loads(rows[0]["statement"])
    events = table(signed, "security_events", "seq")
    kept = events[first["size"] - 1]
    attack(signed, "DELETE FROM audit_checkpoints WHERE number > 1")
    attack(signed, "DELETE FROM security_events WHERE seq > :seq", seq=kept["seq"])
    attack(signed, "UPDATE security_event_head SET seq = :seq, hash = :hash",
           seq=kept["seq"], hash=kept["hash"])
    assert verification.verify(signed.store, signed.keyring).ok  # the database alone
    expect(signed, "checkpoints were removed or an older database restored")


def test_a_truncated_or_edited_file_is_detected(signed: Runtime) -> None:
    path = signed.settings.checkpoint_file
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0])
    expect(signed, "the file was truncated")
    edited = json.loads(lines[1])
    edited["signature"] = "00" * 64
    path.write_text(lines[0] + json.dumps(edited) + "\n" + lines[2])
    expect(signed, "checkpoint 2 differs between the database and the file")


def test_a_file_one_behind_is_a_crash_and_is_repaired_by_the_next_run(
        signed: Runtime) -> None:
    path = signed.settings.checkpoint_file
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]))
    assert verify(signed).ok
    checkpoints.write_checkpoint(signed)
    assert len(checkpoints.read_file(path)) == 4
    assert verify(signed).ok


def test_a_dropped_checkpoint_table_is_detected_by_the_file(signed: Runtime) -> None:
    attack(signed, "DROP TABLE audit_checkpoints")
    expect(signed, "checkpoints were removed or an older database restored")


def test_the_trigger_asks_for_a_checkpoint_every_thousand_events_of_the_chain() -> None:
    """Chain positions, not this process's count: events of other processes (the gaps in
    the positions seen here) count as well."""
    asked: list[int] = []
    seen: list[int] = []

    def checkpoint_now() -> None:
        asked.append(seen[-1])

    trigger = checkpoints.CheckpointTrigger(checkpoint_now, every=1000)
    event = SecurityEvent(Action.ORDERS_READ, Outcome.SUCCESS, Actor(Channel.API))
    for seq in [*range(5, 900), 1004, 1005, *range(1500, 2010, 3)]:
        seen.append(seq)
        trigger(CommittedEvent(seq, "2026-12-05T00:00:00.000000Z", event))
    assert asked == [1005, 2007]  # (2005 was due; 2007 is the first seen from there)


# -- the job signs only what it authenticated ------------------------------------------------

def _checkpoint_count(rt: Runtime) -> int:
    return len(table(rt, "audit_checkpoints", "number"))


def _forge_at_head(rt: Runtime, gap: int) -> int:
    """A row added after the head, linked to it but with a made-up MAC (``gap`` numbers
    skipped), and the head moved onto it: its number."""
    last = table(rt, "security_events", "seq")[-1]
    forged = dict(last, seq=last["seq"] + 1 + gap, prev_hash=last["hash"], hash="ab" * 32,
                  status=201)
    attack(rt, f"INSERT INTO security_events ({', '.join(forged)}) "
               f"VALUES ({', '.join(':' + name for name in forged)})", **forged)
    attack(rt, "UPDATE security_event_head SET seq = :seq, hash = :hash",
           seq=forged["seq"], hash=forged["hash"])
    return int(last["seq"]) + 1


@pytest.mark.parametrize("gap", [0, 1], ids=["wrong-mac", "missing-seq"])
def test_an_event_forged_at_the_head_is_never_signed(signed: Runtime, gap: int) -> None:
    """Without the log key an attacker inserts an event after the head: signed, it would
    get an inclusion proof that checks with the public key alone."""
    path = signed.settings.checkpoint_file
    lines_before = path.read_text()
    first_bad = _forge_at_head(signed, gap)
    with pytest.raises(checkpoints.CheckpointRefusedError, match=f"event {first_bad} "):
        checkpoints.write_checkpoint(signed)
    assert _checkpoint_count(signed) == 3
    assert path.read_text() == lines_before
    attack(signed, "DELETE FROM security_events WHERE seq >= :seq", seq=first_bad)
    last = table(signed, "security_events", "seq")[-1]
    attack(signed, "UPDATE security_event_head SET seq = :seq, hash = :hash",
           seq=last["seq"], hash=last["hash"])
    write_events(signed, 2)  # an honest log goes on being signed
    assert checkpoints.write_checkpoint(signed) == 2
    assert verify(signed).ok


@pytest.mark.parametrize("frontier", ["x", "first"], ids=["garbage", "another-range"])
def test_a_corrupt_stored_frontier_is_rebuilt_from_the_events(signed: Runtime,
                                                              frontier: str) -> None:
    """The compact range column is not signed: garbage stopped every run (a JSON error),
    another checkpoint's range was built on (a root that fails verification)."""
    stored = table(signed, "audit_checkpoints", "number")[0]["frontier"]
    attack(signed, "UPDATE audit_checkpoints SET frontier = :f WHERE number = 3",
           f=stored if frontier == "first" else frontier)
    write_events(signed, 2)
    assert checkpoints.write_checkpoint(signed) == 2
    result = verify(signed)
    assert result.ok and result.checkpoints == 4, result


def test_a_frontier_is_rebuilt_only_from_authentic_events(signed: Runtime) -> None:
    attack(signed, "UPDATE audit_checkpoints SET frontier = 'x' WHERE number = 3")
    attack(signed, "UPDATE security_events SET status = 500 WHERE seq = 2")
    with pytest.raises(checkpoints.CheckpointRefusedError, match="event 2 was altered"):
        checkpoints.write_checkpoint(signed)
    assert _checkpoint_count(signed) == 3


def test_a_clock_stepped_back_signs_a_checkpoint_that_still_verifies(
        signed: Runtime, clock: ManualClock) -> None:
    """NTP or a restored VM: the same vault, its clock ten minutes behind the last
    checkpoint."""
    behind = Runtime(signed.settings, signed.store, signed.keyring,
                     ManualClock(clock.now() - timedelta(minutes=10)))
    write_events(behind, 1)
    assert checkpoints.write_checkpoint(behind) == 1
    result = verify(signed)
    assert result.ok and result.checkpoints == 4, result


# -- the file read after the walk -------------------------------------------------------------

def test_a_checkpoint_written_during_the_walk_is_no_false_alarm(
        signed: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A running server signs a checkpoint while verify walks its snapshot: the file, read
    after the walk, is one ahead of the snapshot; that checkpoint is in the database."""
    monkeypatch.setattr(verification, "VERIFY_BATCH", 2)
    done: list[bool] = []

    def checkpoint_meanwhile(_seq: int) -> None:
        if not done:
            worker = threading.Thread(target=lambda: (
                write_events(signed, 2), checkpoints.write_checkpoint(signed),
                done.append(True)))
            worker.start()
            worker.join(timeout=10)

    result = verification.verify(signed.store, signed.keyring, on_batch=checkpoint_meanwhile,
                                 checkpoint_file=signed.settings.checkpoint_file)
    assert done == [True]
    assert result.ok and result.checkpoints == 3, result
    path = signed.settings.checkpoint_file
    lines = path.read_text().splitlines(keepends=True)
    forged = dict(json.loads(lines[-1]), number=5)
    path.write_text("".join(lines) + json.dumps(forged) + "\n")  # in no database
    expect(signed, "checkpoints were removed or an older database restored")


@pytest.mark.parametrize("bad", ["not json\n", '{"number": 4, "signat'],
                         ids=["garbage", "half-written"])
def test_a_bad_last_line_of_the_file_is_named_not_a_crash(signed: Runtime, bad: str) -> None:
    path = signed.settings.checkpoint_file
    with path.open("a") as file:
        file.write(bad)
    expect(signed, "line 4 of the checkpoint file")
    with pytest.raises(checkpoints.CheckpointFileError, match="line 4 of the checkpoint file"):
        checkpoints.write_checkpoint(signed)
    assert _checkpoint_count(signed) == 3


# -- checkpoints that stopped ------------------------------------------------------------------

def overdue(rt: Runtime, clock: ManualClock) -> VerifyResult:
    return verification.checkpoints_overdue(verify(rt), clock.now())


def test_events_no_checkpoint_covered_for_ten_minutes_are_overdue(
        signed: Runtime, clock: ManualClock) -> None:
    """No server runs the checkpoint job: the log is still intact, and verify says since
    when its events wait for a signature (the oldest one's own, MAC'd, time)."""
    first_waiting = clock.now()
    write_events(signed, 2)
    clock.advance(10 * 60 + 1)
    write_events(signed, 1)
    result = overdue(signed, clock)
    assert result.ok, result
    assert result.uncovered_since is not None
    assert result.uncovered_since.startswith(first_waiting.strftime("%Y-%m-%dT%H:%M:%S"))
    assert result.waited == timedelta(minutes=10, seconds=1)
    checkpoints.write_checkpoint(signed)  # a server runs the job again
    assert overdue(signed, clock).waited is None


def test_events_waiting_less_than_ten_minutes_are_not_overdue(
        signed: Runtime, clock: ManualClock) -> None:
    write_events(signed, 1)
    clock.advance(10 * 60)
    result = overdue(signed, clock)
    assert result.ok and result.uncovered_since is not None and result.waited is None, result


def test_an_old_checkpoint_with_nothing_after_it_is_not_overdue(
        signed: Runtime, clock: ManualClock) -> None:
    """A quiet vault: nothing was written since the last checkpoint, nothing waits."""
    clock.advance(3600)
    result = overdue(signed, clock)
    assert result.ok and result.uncovered_since is None and result.waited is None, result
