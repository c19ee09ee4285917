"""jobs/scheduler.py: the ticks that run ``serve``'s jobs, started and stopped with a real
server (TLS, on loopback, built by the product's ``build_server``).

- A server starts the scheduler with it: a job it has not seen is scheduled at the first
  tick, and a run due by the runtime's clock runs within a tick or so, recorded as the
  system's.
- A job that fails raises nothing into request handling and does not stop the scheduler:
  requests are answered, the next job runs, and later ticks run both again. A job that
  hangs holds up only itself: the others run tick after tick.
- Jobs run off the event loop: while a job is at work the server answers at once.
- Stopping the server stops the ticks (a run that falls due afterwards does not run) and waits
  for the run in progress; one that does not end in time is left to its thread, and the log
  says so.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import anyio
import pytest

from sellervault import bootstrap
from sellervault.clock import ManualClock
from sellervault.jobs.registry import Registry
from sellervault.jobs.scheduler import TICK_SECONDS, Scheduler
from sellervault.runtime import Runtime
from tests.jobs.helpers import (
    INTERVAL,
    Blocking,
    Counting,
    Failing,
    job,
    job_row,
    run_events,
    wait_until,
)
from tests.support import start_server


def test_the_scheduler_starts_and_stops_with_the_server(
        rt: Runtime, clock: ManualClock, initialized: bootstrap.InitResult) -> None:
    counting = Counting()
    with start_server(rt, initialized, Registry([job("counting", counting)])) as server:
        wait_until(lambda: job_row(rt, "counting") is not None)
        assert counting.calls == 0  # scheduled one interval ahead
        clock.advance(INTERVAL)
        wait_until(lambda: run_events(rt))
        with server.client() as client:
            assert client.get("/health").status_code == 200
    [event] = run_events(rt)
    assert (event.channel, event.outcome, event.target_id, event.count) == (
        "system", "success", "counting", 7)
    clock.advance(INTERVAL * 10)
    time.sleep(TICK_SECONDS * 2.5)  # ticks would have come by now
    assert counting.calls == 1


def test_a_failing_job_raises_nothing_into_requests_and_the_scheduler_goes_on(
        rt: Runtime, clock: ManualClock, initialized: bootstrap.InitResult) -> None:
    failing, counting = Failing(), Counting()
    registry = Registry([job("always-fails", failing, attempts=2,
                             backoff=timedelta(seconds=0.05)),
                         job("after-it", counting)])
    with start_server(rt, initialized, registry) as server:
        wait_until(lambda: job_row(rt, "after-it") is not None)
        for runs in (1, 2):
            clock.advance(INTERVAL)
            wait_until(lambda runs=runs: len(run_events(rt)) == 2 * runs)
            with server.client() as client:
                assert client.get("/health").status_code == 200
    assert (failing.calls, counting.calls) == (4, 2)
    assert sorted((event.target_id, event.outcome) for event in run_events(rt)) == sorted([
        ("always-fails", "error"), ("after-it", "success")] * 2)


def test_a_job_that_hangs_holds_up_only_itself(
        rt: Runtime, clock: ManualClock, initialized: bootstrap.InitResult) -> None:
    """A job stuck on a peer that never answers: the other jobs go on being run, tick after
    tick, and the stuck one is not started a second time beside itself."""
    stuck, counting = Blocking(), Counting()
    registry = Registry([job("stuck", stuck), job("after-it", counting)])
    try:
        with start_server(rt, initialized, registry):
            wait_until(lambda: job_row(rt, "after-it") is not None)
            clock.advance(INTERVAL)
            assert stuck.started.wait(10)
            for runs in (1, 2, 3):
                wait_until(lambda runs=runs: counting.calls == runs)
                clock.advance(INTERVAL)
            assert stuck.calls == 1
            stuck.release.set()
    finally:
        stuck.release.set()
    assert [event.target_id for event in run_events(rt)].count("after-it") == 3


def test_a_job_at_work_holds_up_no_request_and_stopping_waits_for_it(
        rt: Runtime, clock: ManualClock, initialized: bootstrap.InitResult) -> None:
    blocking = Blocking()
    with start_server(rt, initialized, Registry([job("slow", blocking)])) as server:
        wait_until(lambda: job_row(rt, "slow") is not None)
        clock.advance(INTERVAL)
        assert blocking.started.wait(10)
        try:
            with server.client() as client:
                for _ in range(3):
                    started = time.monotonic()
                    assert client.get("/health").status_code == 200
                    assert time.monotonic() - started < 5  # (blocked, it would wait for ever)
            assert run_events(rt) == []
        finally:
            # The server stops while the job is still at work; it ends half a second later.
            threading.Timer(0.5, blocking.release.set).start()
    assert [event.outcome for event in run_events(rt)] == ["success"]


def test_a_run_that_outlasts_the_stop_is_left_to_its_thread(
        rt: Runtime, clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    blocking = Blocking()
    scheduler = Scheduler(rt, Registry([job("slow", blocking)]), tick_seconds=0.05)

    async def start_then_stop_during_a_run() -> bool:
        scheduler.start()
        while job_row(rt, "slow") is None:
            await anyio.sleep(0.02)
        clock.advance(INTERVAL)
        while not blocking.started.is_set():
            await anyio.sleep(0.02)
        return await scheduler.stop(wait_seconds=0.2)

    try:
        with caplog.at_level(logging.WARNING, logger="sellervault.jobs"):
            assert anyio.run(start_then_stop_during_a_run) is False
        assert not scheduler.running
        assert "a run was still in progress when the server stopped" in caplog.text
    finally:
        blocking.release.set()
    wait_until(lambda: run_events(rt))  # the run itself finishes, and is recorded
