"""The scheduler ``serve`` runs its periodic jobs with, started and stopped with the server.

APScheduler (3.x, its ``AsyncIOScheduler``) fires a tick every ``TICK_SECONDS`` on the server's
event loop: a timer, and nothing else, runs there. A tick hands the schedule to a thread
(``Runner.due_jobs``: which runs are due by the runtime's clock), which starts each due job on
a thread of its own (``Runner.run_scheduled``: claim and run it), so neither the jobs'
database work nor their waits between attempts hold up the event loop or take one of the
threads that run requests, and a job that hangs (a peer that never answers, a lock never
released) holds up only itself: the others go on being run, and ``jobs list`` shows it
overdue. A job whose run in this process is still going is not started again; at most
``MAX_RUNNING_JOBS`` run at once. Which jobs are due, and which process runs them, is decided
in the database (``jobs.runner``), so every server process runs a scheduler and each due run
still happens once; a run is due within about ``TICK_SECONDS`` of its time.

Nothing a job does reaches request handling: the runner raises nothing (failures are logged
and recorded as events), and a tick that fails all the same is caught here, so neither a
request nor the next tick sees it. Stopping ends the ticks, tells a run waiting to retry not
to, and waits for the runs in progress (at most ``STOP_WAIT_SECONDS`` in all, off the event
loop).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC

import anyio.to_thread
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from sellervault.audit.checkpoints import CheckpointTrigger
from sellervault.audit.events import SYSTEM_ACTOR, Actor
from sellervault.audit.subscribers import Subscription
from sellervault.jobs.registry import AUDIT_CHECKPOINT, JOBS, Job, Registry
from sellervault.jobs.runner import Runner
from sellervault.runtime import Runtime

log = logging.getLogger("sellervault.jobs")

TICK_SECONDS = 1.0
STOP_WAIT_SECONDS = 30.0
MAX_RUNNING_JOBS = 4
"""Job runs one process has going at once: each may hold two of the pool's connections (its
advisory lock's and its work's), which requests share."""
TICK_ID = "sellervault-jobs-tick"


def system_actor() -> Actor:
    """Who runs a scheduled job: the system, on this host."""
    return SYSTEM_ACTOR


class Scheduler:
    """The ticks of one server process (see the module's docstring)."""

    def __init__(self, runtime: Runtime, registry: Registry = JOBS, *,
                 tick_seconds: float = TICK_SECONDS) -> None:
        self._stopping = threading.Event()
        self.runner = Runner(runtime, registry, system_actor(), stopping=self._stopping)
        self._tick_seconds = tick_seconds
        # A late tick runs late rather than being dropped with a warning (an event loop busy
        # for a second, parsing a large body, is no misfire); missed ticks make one.
        self._timer = AsyncIOScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        self._dispatcher: threading.Thread | None = None
        self._runs: dict[str, threading.Thread] = {}  # (the dispatcher's; stop copies it)
        self._runs_lock = threading.Lock()
        self._runtime = runtime
        self._trigger: Subscription | None = None

    @property
    def running(self) -> bool:
        return bool(self._timer.running) and not self._stopping.is_set()

    def start(self) -> None:
        """Start the ticks; call it in the event loop they are to fire on. A checkpoint is
        also signed whenever the log grows by 1,000 events (``checkpoints.CheckpointTrigger``),
        on the trigger's own thread."""
        self._timer.add_job(self._tick, "interval", seconds=self._tick_seconds, id=TICK_ID)
        self._timer.start()
        if AUDIT_CHECKPOINT.name in self.runner.registry.names:
            trigger = CheckpointTrigger(self._checkpoint_now)
            self._trigger = self._runtime.audit.subscribe("checkpoint-trigger", trigger,
                                                          trigger.wants)

    def _checkpoint_now(self) -> None:
        if not self._stopping.is_set():
            self.runner.run_now(AUDIT_CHECKPOINT.name)

    async def _tick(self) -> None:
        if self._stopping.is_set() or (self._dispatcher is not None
                                       and self._dispatcher.is_alive()):
            return
        # Daemon threads: a job that hangs must not keep the process from exiting.
        self._dispatcher = threading.Thread(target=self._dispatch, name="sellervault-jobs",
                                            daemon=True)
        self._dispatcher.start()

    def _dispatch(self) -> None:
        """Start each due job on its own thread, unless its last run here goes on."""
        try:
            for job in self.runner.due_jobs():
                with self._runs_lock:
                    self._runs = {name: run for name, run in self._runs.items()
                                  if run.is_alive()}
                    if self._stopping.is_set() or len(self._runs) >= MAX_RUNNING_JOBS:
                        break
                    if job.name in self._runs:
                        continue
                    run = threading.Thread(target=self._run, args=(job,), daemon=True,
                                           name=f"sellervault-job-{job.name}")
                    self._runs[job.name] = run
                    run.start()
        except Exception as exc:  # (the runner raises nothing; this is the scheduler's guard)
            log.error("jobs: a tick failed (%s)", type(exc).__name__)

    def _run(self, job: Job) -> None:
        try:
            self.runner.run_scheduled(job)
        except Exception as exc:  # (as above)
            log.error("jobs: job %s failed outside its run (%s)", job.name,
                      type(exc).__name__)

    async def stop(self, wait_seconds: float = STOP_WAIT_SECONDS) -> bool:
        """Stop the ticks and wait for the runs in progress; whether they ended in time (one
        that did not goes on in its thread, and its transaction ends with the process)."""
        self._stopping.set()
        if self._trigger is not None:
            trigger, self._trigger = self._trigger, None
            await anyio.to_thread.run_sync(self._runtime.audit.subscribers.unsubscribe, trigger)
        if self._timer.running:
            self._timer.shutdown(wait=False)
            await anyio.sleep(0)  # (APScheduler's asyncio shutdown runs at the loop's next turn)
        deadline = time.monotonic() + wait_seconds
        threads = [self._dispatcher] if self._dispatcher is not None else []
        await anyio.to_thread.run_sync(_join, threads, deadline, abandon_on_cancel=True)
        with self._runs_lock:  # (a dispatcher still running may yet start one: not after)
            threads += list(self._runs.values())
        await anyio.to_thread.run_sync(_join, threads, deadline, abandon_on_cancel=True)
        if any(thread.is_alive() for thread in threads):
            log.warning("jobs: a run was still in progress when the server stopped")
            return False
        return True


def _join(threads: list[threading.Thread], deadline: float) -> None:
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
