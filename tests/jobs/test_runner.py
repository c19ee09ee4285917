"""jobs/runner.py: each due run claimed and run exactly once, on SQLite and on PostgreSQL.

- A job is first due one interval after a runner first sees it; a run that is not due does not
  run; moving the clock to the due time makes it due; a run makes the next one due an interval
  later, and a server that was away for many intervals runs each job once, not once per
  missed interval.
- Exactly once under a race: many runners, each with an engine of its own (its own
  connections, as separate processes have), claiming the same due run at the same moment:
  one wins, one run, one event. The claim's conditional UPDATE alone has one winner.
- Every run is a ``jobs:run`` security event (channel, target job and name, the count); a run
  whose attempts all fail is retried with backoff, then recorded as an ``error`` event with
  reason ``job_failed``; the logs name the exception's class and never its message; the next
  job still runs.
- A slow run is never overlapped, neither by the next due run nor by a run by hand. A run whose
  process died blocks nothing on PostgreSQL (its advisory lock ended with it), and on SQLite
  until its ``max_duration`` has passed.
- A run by hand runs whether due or not, as the CLI, and counts as the job's run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import func, select, text, update

from sellervault.audit import verification
from sellervault.bootstrap import cli_actor
from sellervault.clock import ManualClock
from sellervault.jobs.models import JobRunRow
from sellervault.jobs.registry import Registry, UnknownJobError
from sellervault.jobs.runner import (
    JOB_FAILED,
    JOB_RUNNING,
    Runner,
    RunResult,
    RunStatus,
    job_lock_id,
)
from sellervault.jobs.scheduler import system_actor
from sellervault.runtime import Runtime
from sellervault.store import maintenance
from sellervault.store.engine import Store
from tests.jobs.helpers import (
    INTERVAL,
    PII,
    Blocking,
    Counting,
    Failing,
    job,
    job_row,
    run_events,
)

T = TypeVar("T")
RACERS = 8


def runner_for(rt: Runtime, *jobs: object, **options: object) -> Runner:
    return Runner(rt, Registry(jobs), system_actor(), **options)  # type: ignore[arg-type]


@contextmanager
def other_processes(rt: Runtime, count: int) -> Iterator[list[Runtime]]:
    """``count`` runtimes on the same database and clock, each with an engine (a connection
    pool, on SQLite its own writer queue) of its own, as separate server processes have."""
    opened = [Runtime.open(rt.settings, rt.clock) for _ in range(count)]
    try:
        yield opened
    finally:
        for other in opened:
            other.close()


def at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Run ``calls`` on threads of their own, released together."""
    barrier = threading.Barrier(len(calls))
    results: list[T] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def race(call: Callable[[], T]) -> None:
        barrier.wait()
        try:
            result = call()
        except BaseException as exc:
            failures.append(exc)
            return
        with lock:
            results.append(result)

    threads = [threading.Thread(target=race, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    return results


# -- due times -------------------------------------------------------------------------------

def test_a_job_runs_only_when_due_by_the_runtime_clock(rt: Runtime, clock: ManualClock) -> None:
    counting = Counting()
    runner = runner_for(rt, job("counting", counting))
    scheduled_at = clock.now()
    assert runner.run_due() == []  # first seen: scheduled one interval ahead, not run
    row = job_row(rt, "counting")
    assert row is not None and row.next_due_at == scheduled_at + INTERVAL

    clock.advance(INTERVAL - timedelta(seconds=1))
    assert runner.run_due() == []
    assert counting.calls == 0

    clock.advance(timedelta(seconds=1))
    assert runner.run_due() == [RunResult("counting", RunStatus.SUCCEEDED, 7, 1)]
    assert counting.calls == 1
    assert runner.run_due() == []  # the due run is done: the next is an interval away
    row = job_row(rt, "counting")
    assert row is not None
    assert row.next_due_at == clock.now() + INTERVAL
    assert (row.last_outcome, row.last_count, row.running_since) == ("success", 7, None)
    assert row.last_finished_at == clock.now()

    clock.advance(INTERVAL)
    assert [result.status for result in runner.run_due()] == [RunStatus.SUCCEEDED]
    assert counting.calls == 2


def test_missed_intervals_make_one_run(rt: Runtime, clock: ManualClock) -> None:
    """A server stopped for a day runs each job once when it is back, not once per interval
    it missed."""
    counting = Counting()
    runner = runner_for(rt, job("counting", counting))
    runner.run_due()
    clock.advance(INTERVAL * 100)
    assert len(runner.run_due()) == 1
    assert runner.run_due() == []
    assert counting.calls == 1
    row = job_row(rt, "counting")
    assert row is not None and row.next_due_at == clock.now() + INTERVAL


def test_a_job_held_off_past_its_interval_is_run_now_and_is_an_error_event(
        rt: Runtime, clock: ManualClock) -> None:
    """No run ever sets a job's next run further off than its interval: a row moved so (to
    hold the log's checkpoints off on a quiet log) is brought back and run at once, and its
    ``jobs:run`` event (error, ``job_held_off``) is what the ``job-failed`` rule alerts on;
    of two runners, one reports it."""
    counting = Counting()
    runner = runner_for(rt, job("counting", counting))
    runner.run_due()
    with rt.store.transaction() as session:
        session.execute(update(JobRunRow).where(JobRunRow.name == "counting").values(
            next_due_at=clock.now() + timedelta(days=30)))
    other = runner_for(rt, job("counting", counting))
    assert [r.status for r in runner.run_due() + other.run_due()] == [RunStatus.SUCCEEDED]
    assert counting.calls == 1
    held = [e for e in run_events(rt) if e.reason == "job_held_off"]
    assert [(e.outcome, e.target_id) for e in held] == [("error", "counting")]
    clock.advance(INTERVAL - timedelta(seconds=1))
    assert runner.run_due() == []  # an ordinary schedule again


def test_each_run_is_a_security_event_with_its_count(rt: Runtime, clock: ManualClock) -> None:
    runner = runner_for(rt, job("counting", Counting(count=3)))
    runner.run_due()
    clock.advance(INTERVAL)
    runner.run_due()
    [event] = run_events(rt)
    assert (event.channel, event.actor_id, event.source_ip) == ("system", None, "local")
    assert (event.outcome, event.target_type, event.target_id, event.count, event.reason) == (
        "success", "job", "counting", 3, None)
    assert verification.verify(rt.store, rt.keyring).ok


# -- exactly once ----------------------------------------------------------------------------

def test_of_many_runners_racing_for_a_due_run_exactly_one_runs_it(
        rt: Runtime, clock: ManualClock) -> None:
    counting = Counting()
    jobs = [job("counting", counting)]
    runner_for(rt, *jobs).run_due()
    clock.advance(INTERVAL)
    with other_processes(rt, RACERS) as processes:
        results = at_once([runner_for(process, *jobs).run_due for process in processes])
    ran = [result for results_of_one in results for result in results_of_one
           if result.status is RunStatus.SUCCEEDED]
    assert len(ran) == 1
    assert counting.calls == 1
    assert len(run_events(rt)) == 1
    assert verification.verify(rt.store, rt.keyring).ok


def test_the_claim_alone_has_one_winner(rt: Runtime, clock: ManualClock) -> None:
    """Without the advisory lock in front of it (PostgreSQL), the conditional UPDATE still
    lets exactly one of the claimants through: READ COMMITTED re-reads the row the winner
    changed, and SQLite's writers take turns."""
    counting = job("counting", Counting())
    runner_for(rt, counting).run_due()
    clock.advance(INTERVAL)
    with other_processes(rt, RACERS) as processes:
        claims = at_once([lambda process=process: runner_for(process, counting).claim(counting)
                          for process in processes])
    assert len([claim for claim in claims if claim is not None]) == 1
    row = job_row(rt, "counting")
    assert row is not None and row.run_id in claims and row.running_since == clock.now()


def test_a_claim_is_refused_for_a_run_that_is_not_due(rt: Runtime, clock: ManualClock) -> None:
    counting = job("counting", Counting())
    runner = runner_for(rt, counting)
    runner.run_due()
    assert runner.claim(counting) is None
    clock.advance(INTERVAL)
    assert runner.claim(counting) is not None
    assert runner.claim(counting) is None  # claimed: no longer due


# -- failures --------------------------------------------------------------------------------

def test_a_failing_job_is_retried_with_backoff_then_recorded_and_the_next_job_runs(
        rt: Runtime, clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    failing, counting = Failing(), Counting()
    backoff = timedelta(seconds=0.1)
    runner = runner_for(rt, job("always-fails", failing, attempts=3, backoff=backoff),
                        job("after-it", counting))
    runner.run_due()
    clock.advance(INTERVAL)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="sellervault.jobs"):
        results = runner.run_due()
    assert time.monotonic() - started >= 0.3  # waited 0.1 s, then 0.2 s
    assert results == [RunResult("always-fails", RunStatus.FAILED, None, 3, "ValueError"),
                       RunResult("after-it", RunStatus.SUCCEEDED, 7, 1)]
    assert (failing.calls, counting.calls) == (3, 1)

    failed, succeeded = run_events(rt)
    assert (failed.target_id, failed.outcome, failed.reason, failed.count) == (
        "always-fails", "error", JOB_FAILED, None)
    assert (succeeded.target_id, succeeded.outcome) == ("after-it", "success")
    row = job_row(rt, "always-fails")
    assert row is not None and (row.last_outcome, row.running_since) == ("error", None)
    assert row.next_due_at == clock.now() + INTERVAL  # not retried at every tick

    assert [record.getMessage() for record in caplog.records] == [
        f"job always-fails: attempt {n} of 3 failed (ValueError)" for n in (1, 2, 3)]
    assert PII not in caplog.text and "could not reach" not in caplog.text


def test_a_job_that_fails_once_then_succeeds_is_one_successful_run(
        rt: Runtime, clock: ManualClock) -> None:
    failing = Failing(failures=1)
    runner = runner_for(rt, job("flaky", failing, backoff=timedelta(0)))
    runner.run_due()
    clock.advance(INTERVAL)
    assert runner.run_due() == [RunResult("flaky", RunStatus.SUCCEEDED, 7, 2)]
    assert [(event.outcome, event.count) for event in run_events(rt)] == [("success", 7)]


def test_stopping_ends_the_wait_before_the_next_attempt(rt: Runtime,
                                                        clock: ManualClock) -> None:
    failing = Failing()
    runner = runner_for(rt, job("always-fails", failing, backoff=timedelta(seconds=60)))
    runner.run_due()
    clock.advance(INTERVAL)
    threading.Timer(0.2, runner.stopping.set).start()
    started = time.monotonic()
    [result] = runner.run_due()
    assert time.monotonic() - started < 10
    assert (result.status, result.attempts, failing.calls) == (RunStatus.FAILED, 1, 1)
    assert [event.outcome for event in run_events(rt)] == ["error"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_database_out_of_reach_raises_nothing(rt: Runtime, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    gone = Store.from_url(f"sqlite:///{tmp_path}/no-such-directory/x.db")
    try:
        runner = Runner(Runtime(rt.settings, gone, rt.keyring, rt.clock),
                        Registry([job("counting", Counting())]), system_actor())
        with caplog.at_level(logging.WARNING, logger="sellervault.jobs"):
            assert runner.run_due() == []
            result = runner.run_now("counting")
    finally:
        gone.dispose()
    assert (result.status, result.attempts, result.error) == (
        RunStatus.FAILED, 0, "OperationalError")
    assert "the schedule could not be read (OperationalError)" in caplog.text
    assert "no-such-directory" not in caplog.text


# -- no overlap ------------------------------------------------------------------------------

def test_a_slow_run_is_overlapped_neither_by_the_next_due_run_nor_by_a_run_by_hand(
        rt: Runtime, clock: ManualClock) -> None:
    blocking = Blocking()
    jobs = [job("slow", blocking)]
    runner_for(rt, *jobs).run_due()
    clock.advance(INTERVAL)
    first: list[list[RunResult]] = []
    running = threading.Thread(target=lambda: first.append(runner_for(rt, *jobs).run_due()))
    running.start()
    try:
        assert blocking.started.wait(10)
        clock.advance(INTERVAL * 2)  # the next run is due while the first goes on
        with other_processes(rt, 1) as [other]:
            assert all(result.status is RunStatus.SKIPPED
                       for result in runner_for(other, *jobs).run_due())
            by_hand = Runner(other, Registry(jobs), cli_actor())
            assert by_hand.run_now("slow").status is RunStatus.SKIPPED
            assert blocking.calls == 1
            refused = run_events(rt)[-1]
            assert (refused.channel, refused.outcome, refused.reason) == (
                "cli", "failed", JOB_RUNNING)
    finally:
        blocking.release.set()
        running.join(10)
    assert [result.status for result in first[0]] == [RunStatus.SUCCEEDED]
    assert [result.status for result in runner_for(rt, *jobs).run_due()] == [
        RunStatus.SUCCEEDED]  # once the first has ended, the due run goes ahead
    assert blocking.calls == 2


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_a_run_held_by_another_process_is_not_started(
        rt: Runtime, clock: ManualClock) -> None:
    counting = Counting()
    runner = runner_for(rt, job("counting", counting))
    runner.run_due()
    clock.advance(INTERVAL)
    with rt.store.engine.connect() as elsewhere:
        elsewhere.execute(select(func.pg_advisory_lock(job_lock_id("counting"))))
        assert runner.run_due() == [RunResult("counting", RunStatus.SKIPPED)]
        assert counting.calls == 0
        elsewhere.execute(select(func.pg_advisory_unlock(job_lock_id("counting"))))
    assert runner.run_due() == [RunResult("counting", RunStatus.SUCCEEDED, 7, 1)]


def test_a_run_whose_process_died_blocks_the_job_only_on_sqlite_and_only_for_a_while(
        rt: Runtime, clock: ManualClock) -> None:
    counting = Counting()
    max_duration = timedelta(minutes=10)
    runner = runner_for(rt, job("counting", counting, max_duration=max_duration))
    runner.run_due()
    clock.advance(INTERVAL)
    with rt.store.engine.begin() as connection:  # a claim whose process then died
        connection.execute(update(JobRunRow).where(JobRunRow.name == "counting")
                           .values(run_id="dead", running_since=clock.now()))
    if rt.store.dialect == "sqlite":
        assert runner.run_due() == []
        assert runner.run_now("counting").status is RunStatus.SKIPPED
        clock.advance(max_duration)
    assert [result.status for result in runner.run_due()] == [RunStatus.SUCCEEDED]
    assert counting.calls == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_advisory_lock_never_stays_behind_in_the_pool(rt: Runtime,
                                                         clock: ManualClock) -> None:
    runner = runner_for(rt, job("always-fails", Failing(), attempts=1))
    runner.run_due()
    clock.advance(INTERVAL)
    runner.run_due()
    with rt.store.engine.connect() as connection:  # (this database's, but for the
        # runtime's own claim on the vault: store.maintenance)
        held = connection.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) AND NOT "
            "(classid = :high AND objid = :low)"),
            {"high": maintenance.ADVISORY_KEY >> 32,
             "low": maintenance.ADVISORY_KEY & 0xFFFFFFFF}).scalar()
    assert held == 0


# -- by hand ---------------------------------------------------------------------------------

def test_a_run_by_hand_runs_at_once_as_the_cli_and_counts_as_the_run(
        rt: Runtime, clock: ManualClock) -> None:
    counting = Counting()
    jobs = Registry([job("counting", counting)])
    by_hand = Runner(rt, jobs, cli_actor())
    assert by_hand.run_now("counting") == RunResult("counting", RunStatus.SUCCEEDED, 7, 1)
    assert by_hand.run_now("counting").status is RunStatus.SUCCEEDED  # due or not
    assert counting.calls == 2
    assert [(event.channel, event.outcome) for event in run_events(rt)] == [
        ("cli", "success"), ("cli", "success")]
    scheduled = Runner(rt, jobs, system_actor())
    clock.advance(INTERVAL - timedelta(seconds=1))
    assert scheduled.run_due() == []  # the run by hand was the interval's run
    clock.advance(timedelta(seconds=1))
    assert len(scheduled.run_due()) == 1
    with pytest.raises(UnknownJobError):
        by_hand.run_now("no-such-job")


# -- where the jobs stand --------------------------------------------------------------------

def test_states_say_where_each_job_stands(rt: Runtime, clock: ManualClock) -> None:
    runner = runner_for(rt, job("counting", Counting()), job("always-fails", Failing(),
                                                                 attempts=1))
    assert [(state.job.name, state.next_due_at, state.last_outcome)
            for state in runner.states()] == [("counting", None, None),
                                              ("always-fails", None, None)]
    runner.run_due()
    clock.advance(INTERVAL)
    runner.run_due()
    counting, failing = runner.states()
    assert (counting.last_outcome, counting.last_count, counting.last_finished_at) == (
        "success", 7, clock.now())
    assert (failing.last_outcome, failing.last_count) == ("error", None)
    assert counting.next_due_at == failing.next_due_at == clock.now() + INTERVAL
    assert counting.running_since is None
    assert not counting.overdue and not failing.overdue


def test_a_job_a_whole_interval_past_due_is_overdue(rt: Runtime, clock: ManualClock) -> None:
    """No server runs the scheduler: ``jobs list`` says so, until a run comes."""
    runner = runner_for(rt, job("counting", Counting()))
    runner.run_due()  # scheduled: due one interval from now
    clock.advance(2 * INTERVAL)
    [state] = runner.states()
    assert not state.overdue  # exactly one interval late: a tick may be on its way
    clock.advance(1)
    [state] = runner.states()
    assert state.overdue
    runner.run_due()
    [state] = runner.states()
    assert not state.overdue
