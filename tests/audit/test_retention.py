"""audit.retention: events older than the retention leave the log only through the job, up
to a signed checkpoint, after a signed statement of what went; the log still verifies and
proves, and every way of faking a removal is caught.

The log of each test: some events and a checkpoint, 400 days (past the 365-day floor), then
more events and a checkpoint."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from sellervault.audit import checkpoints, proofs, retention, verification
from sellervault.audit.log import event_time
from sellervault.audit.models import EventRow, RemovalRow
from sellervault.audit.verification import VerifyResult
from sellervault.clock import ManualClock
from sellervault.runtime import Runtime
from tests.audit.test_checkpoints import attack, write_events


def verify(rt: Runtime) -> VerifyResult:
    return verification.verify(rt.store, rt.keyring, checkpoint_file=rt.settings.checkpoint_file)


def expect(rt: Runtime, words: str) -> None:
    result = verify(rt)
    assert not result.ok and result.problem is not None and words in result.problem, result


def _seqs(rt: Runtime) -> list[int]:
    with rt.store.transaction() as session:
        return list(session.scalars(select(EventRow.seq).order_by(EventRow.seq)))


@pytest.fixture
def aged(runtime: Runtime, clock: ManualClock) -> Runtime:
    write_events(runtime, 6)
    checkpoints.write_checkpoint(runtime)  # covers the init events and these
    clock.advance(timedelta(days=400))
    write_events(runtime, 4)
    checkpoints.write_checkpoint(runtime)
    return runtime


def _first_checkpoint_size(rt: Runtime) -> int:
    with rt.store.engine.connect() as connection:
        return int(connection.execute(text(
            "SELECT tree_size FROM audit_checkpoints WHERE number = 1")).scalar_one())


def test_the_job_removes_what_is_past_the_retention_and_the_log_still_verifies(
        aged: Runtime) -> None:
    removed_through = _first_checkpoint_size(aged)
    before = _seqs(aged)
    assert retention.remove_expired(aged) == removed_through
    assert _seqs(aged)[0] == removed_through + 1
    assert _seqs(aged) == [s for s in before if s > removed_through] + [before[-1] + 1]
    result = verify(aged)
    assert result.ok, result
    with aged.store.transaction() as session:
        [purge] = session.scalars(select(EventRow).where(EventRow.action == "audit:purge"))
        assert (purge.target_id, purge.count, purge.channel) == (
            str(removed_through), removed_through, "system")
    assert retention.remove_expired(aged) == 0  # nothing more is old enough
    with aged.store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(RemovalRow)) == 1


def test_nothing_younger_than_365_days_goes_whatever_the_setting_says(
        runtime: Runtime, clock: ManualClock) -> None:
    write_events(runtime, 3)
    checkpoints.write_checkpoint(runtime)
    clock.advance(timedelta(days=364))
    assert retention.remove_expired(runtime) == 0
    shorter = Runtime(runtime.settings.model_copy(update={"audit_retention_days": 30}),
                      runtime.store, runtime.keyring, runtime.clock)  # (config refuses it)
    assert retention.remove_expired(shorter) == 0
    assert _seqs(runtime)[0] == 1


def test_proofs_of_the_kept_events_still_hold(aged: Runtime) -> None:
    removed_through = _first_checkpoint_size(aged)
    checkpoints.write_checkpoint(aged)
    retention.remove_expired(aged)
    checkpoints.write_checkpoint(aged)  # a checkpoint after the removal, over every event
    with aged.store.engine.connect() as connection:
        public_key = checkpoints.find_public_key(aged.keyring, connection)
    assert public_key is not None
    for seq in _seqs(aged)[:-1]:
        proof = proofs.prove(aged.store, seq)
        assert proofs.check_proof(proof, public_key.pem().encode()).size >= seq
    with pytest.raises(proofs.ProofUnavailableError, match="removed by the retention"):
        proofs.prove(aged.store, removed_through)


def test_an_interrupted_run_leaves_a_log_that_verifies_and_the_next_run_finishes(
        aged: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    removed_through = _first_checkpoint_size(aged)
    monkeypatch.setattr(retention, "DELETE_BATCH", 2)
    calls = 0
    real = aged.store.transaction

    def dying(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:  # the statement, one batch deleted, then the process "dies"
            raise SystemExit("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(aged.store, "transaction", dying)
    with pytest.raises(SystemExit):
        retention.remove_expired(aged)
    monkeypatch.setattr(aged.store, "transaction", real)
    assert 1 < _seqs(aged)[0] <= removed_through  # half done
    assert verify(aged).ok
    assert retention.remove_expired(aged) > 0
    assert _seqs(aged)[0] == removed_through + 1 and verify(aged).ok


# -- what an attacker with write access to the database cannot fake ---------------------------

def test_events_removed_without_a_statement_are_caught(aged: Runtime) -> None:
    attack(aged, "DELETE FROM security_events WHERE seq <= 3")
    expect(aged, "event 1 is missing")


def test_a_forged_or_edited_statement_is_caught(aged: Runtime) -> None:
    retention.remove_expired(aged)
    attack(aged, "UPDATE audit_removals SET statement = replace(statement, :old, :new) "
                 "WHERE number = 1", old='"removed_through":', new='"removed_through":1')
    expect(aged, "removal 1")


def test_a_kept_event_edited_or_removed_after_a_removal_is_caught(aged: Runtime) -> None:
    removed_through = _first_checkpoint_size(aged)
    retention.remove_expired(aged)
    attack(aged, "UPDATE security_events SET outcome = 'denied' WHERE seq = :seq",
           seq=removed_through + 2)
    expect(aged, f"event {removed_through + 2} was altered")
    attack(aged, "DELETE FROM security_events WHERE seq = :seq", seq=removed_through + 1)
    expect(aged, f"event {removed_through + 1}")


def test_a_signed_statement_removing_young_events_is_caught(aged: Runtime,
                                                            clock: ManualClock) -> None:
    """Even with the key (an insider running code on the server), a statement that removes
    events the floor protects does not verify."""
    _sign_removal_to_the_newest_checkpoint(aged, None, clock.now().isoformat())
    expect(aged, "younger than 365 days")


def _sign_removal_to_the_newest_checkpoint(rt: Runtime, claimed_time: str | None,
                                           time: str) -> None:
    """What an insider with the checkpoint key can do: sign a removal up to the newest
    checkpoint, saying its events went at ``claimed_time`` (None: the last event's own)."""
    with rt.store.transaction() as session:
        key = checkpoints.signing_key(rt.keyring, session)
        last = session.scalars(select(EventRow).order_by(EventRow.seq.desc()).limit(1)).one()
        checkpoint = session.execute(text(
            "SELECT number, tree_size FROM audit_checkpoints ORDER BY number DESC LIMIT 1")
        ).one()
    claimed = last.occurred_at if claimed_time is None else claimed_time
    removal = retention.Removal(1, None, checkpoint.tree_size, checkpoint.number, last.hash,
                                claimed, claimed, time, key.public.key_id)
    statement = removal.statement()
    with rt.store.transaction() as session:
        session.add(RemovalRow(number=1, removed_through=checkpoint.tree_size,
                               statement=statement.decode(), signature=key.sign(statement)))


def test_a_statement_naming_a_checkpoint_of_another_size_is_caught(aged: Runtime) -> None:
    retention.remove_expired(aged)
    with aged.store.engine.begin() as connection:
        row = connection.execute(text("SELECT statement FROM audit_removals")).scalar_one()
    assert json.loads(row)["checkpoint"] == 1
    attack(aged, "DELETE FROM audit_checkpoints WHERE number = 1")
    result = verify(aged)
    assert not result.ok


def test_an_event_time_edited_to_long_ago_removes_nothing_it_protects(aged: Runtime) -> None:
    """The event at the newest checkpoint's size dated 2000 with SQL (its MAC is not
    checked for that): the cut-off goes by the checkpoints' signed times, so only what the
    first checkpoint signed 400 days ago goes, and the statement records that signed time."""
    removed_through = _first_checkpoint_size(aged)
    newest = _seqs(aged)[-1]
    attack(aged, "UPDATE security_events SET occurred_at = '2000-01-01T00:00:00.000000Z' "
                 "WHERE seq = :seq", seq=newest)
    assert retention.remove_expired(aged) == removed_through
    assert _seqs(aged)[0] == removed_through + 1 and newest in _seqs(aged)
    with aged.store.transaction() as session:
        statement = json.loads(session.scalars(select(RemovalRow.statement)).one())
        first = json.loads(session.execute(text(
            "SELECT statement FROM audit_checkpoints WHERE number = 1")).scalar_one())
    assert (statement["checkpoint"], statement["last_time"]) == (1, first["time"])


def test_an_event_time_edited_on_a_young_log_removes_nothing(
        runtime: Runtime, clock: ManualClock) -> None:
    write_events(runtime, 3)
    checkpoints.write_checkpoint(runtime)
    size = _seqs(runtime)[-1]
    attack(runtime, "UPDATE security_events SET occurred_at = '2000-01-01T00:00:00.000000Z' "
                    "WHERE seq = :seq", seq=size)
    clock.advance(60)
    assert retention.remove_expired(runtime) == 0
    assert _seqs(runtime) == list(range(1, size + 1))


def test_a_signed_statement_naming_a_young_checkpoint_is_caught_whatever_it_claims(
        aged: Runtime, clock: ManualClock) -> None:
    """An insider with the key signs a removal up to the newest checkpoint and writes into
    it that the events went in 2000: the floor is measured on the checkpoint's signed time."""
    _sign_removal_to_the_newest_checkpoint(aged, "2000-01-01T00:00:00.000000Z",
                                           event_time(clock.now()))
    expect(aged, "removal 1 removed events younger than 365 days")


def test_a_corrupt_frontier_of_the_removal_checkpoint_makes_no_proof_not_a_crash(
        aged: Runtime) -> None:
    """``audit prove`` continues the tree from the compact range stored with the checkpoint
    the removal names: damaged, it says so (and ``audit verify`` finds what), never a
    traceback or a proof built on it."""
    removed_through = _first_checkpoint_size(aged)
    retention.remove_expired(aged)
    checkpoints.write_checkpoint(aged)
    for damage in ("'x'", "'[]'"):
        attack(aged, f"UPDATE audit_checkpoints SET frontier = {damage} "
                     f"WHERE tree_size = {removed_through}")
        with pytest.raises(proofs.ProofUnavailableError, match="missing or damaged"):
            proofs.prove(aged.store, removed_through + 1)


def test_a_corrupt_frontier_after_a_removal_is_rebuilt_from_the_kept_events(
        aged: Runtime) -> None:
    retention.remove_expired(aged)
    write_events(aged, 2)
    checkpoints.write_checkpoint(aged)
    attack(aged, "UPDATE audit_checkpoints SET frontier = 'x' WHERE number = 3")
    write_events(aged, 2)
    assert checkpoints.write_checkpoint(aged) == 2
    result = verify(aged)
    assert result.ok and result.checkpoints == 4, result


# -- the checkpoint file holds the removal statements too ------------------------------------

def _file_lines(rt: Runtime) -> list[dict[str, Any]]:
    return checkpoints.read_file(rt.settings.checkpoint_file)


def _rewrite_file(rt: Runtime, lines: list[dict[str, Any]]) -> None:
    rt.settings.checkpoint_file.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_a_removal_statement_is_appended_to_the_checkpoint_file(aged: Runtime) -> None:
    retention.remove_expired(aged)
    [line] = checkpoints.removal_lines(_file_lines(aged))
    with aged.store.transaction() as session:
        row = session.scalars(select(RemovalRow)).one()
    assert (line["type"], line["number"], line["statement"], line["signature"]) == (
        "removal", 1, row.statement, row.signature)
    checkpoints.write_checkpoint(aged)  # the next checkpoint after it: numbered on
    assert [c["number"] for c in checkpoints.checkpoint_lines(_file_lines(aged))] == [1, 2, 3]
    assert verify(aged).ok


def test_a_statement_rewritten_in_the_database_with_the_key_differs_from_the_file(
        aged: Runtime) -> None:
    """An insider with the key re-signs an edited statement: the database alone would
    verify, the copy on other storage does not agree."""
    retention.remove_expired(aged)
    with aged.store.transaction() as session:
        key = checkpoints.signing_key(aged.keyring, session)
        row = session.scalars(select(RemovalRow)).one()
        edited = row.statement.replace('"time":"2', '"time":"3')  # a millennium later
        row.statement, row.signature = edited, key.sign(edited.encode())
    expect(aged, "removal statement 1 differs between the database and the file")


def test_a_removal_line_edited_or_added_in_the_file_is_caught(aged: Runtime) -> None:
    retention.remove_expired(aged)
    lines = _file_lines(aged)
    edited = [dict(line, signature="00" + line["signature"][2:]) if line.get("type")
              else line for line in lines]
    _rewrite_file(aged, edited)
    expect(aged, "removal statement 1 differs")
    extra = dict(checkpoints.removal_lines(lines)[0], number=2)
    _rewrite_file(aged, [*lines, extra])
    expect(aged, "holds removal statement 2, the database only 1")
    _rewrite_file(aged, lines)
    assert verify(aged).ok


def test_a_run_that_died_before_appending_is_caught_up_by_the_next(aged: Runtime) -> None:
    retention.remove_expired(aged)
    lines = _file_lines(aged)
    _rewrite_file(aged, checkpoints.checkpoint_lines(lines))  # its append lost
    assert verify(aged).ok  # the database may be one ahead
    retention.remove_expired(aged)  # nothing to remove: it appends what is missing
    assert checkpoints.removal_lines(_file_lines(aged)) == checkpoints.removal_lines(lines)


def test_a_signed_statement_whose_times_are_not_times_is_not_a_statement(
        aged: Runtime) -> None:
    retention.remove_expired(aged)
    with aged.store.transaction() as session:
        key = checkpoints.signing_key(aged.keyring, session)
        row = session.scalars(select(RemovalRow)).one()
        edited = row.statement.replace('"time":"', '"time":"x')
        row.statement, row.signature = edited, key.sign(edited.encode())
    expect(aged, "removal 1 is not a removal statement")
