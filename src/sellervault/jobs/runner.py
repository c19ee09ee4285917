"""Running periodic jobs: each due run exactly once, whatever number of threads and processes
share the database, and never two runs of one job at a time.

**The due run is claimed in the database.** Each job has a row in ``job_runs`` holding the
time its next run is due (from the runtime's clock, so tests move a ``ManualClock`` instead
of waiting). A runner claims the run with one conditional statement that moves the due time
one interval on, and matches only while the row is still due::

    UPDATE job_runs SET next_due_at = :now + interval, run_id = :new, running_since = :now
     WHERE name = :job AND next_due_at <= :now [AND the lease is free: SQLite]

Nothing is read first and written after: under PostgreSQL's READ COMMITTED a second claimant's
``UPDATE`` waits for the first to commit, re-reads the row, finds it no longer due and changes
nothing; SQLite's writers take turns (``BEGIN IMMEDIATE``). Of any number of claimants, the
one whose statement changed the row runs; the others see a row count of 0 and do nothing.
The next due time counts from the claim, so a server stopped for a day runs each job once when
it comes back, not once per missed interval.

**A run is never overlapped.** The claim settles who runs *this* due time, not whether a run
that outlasts its interval is still going when the next one falls due. On PostgreSQL each
attempt to run holds a transaction-scoped advisory lock (``pg_try_advisory_xact_lock``, on a
connection of its own, taken before the claim and held to the end of the run): a runner that
cannot take it does not claim. The lock ends with the run, and with its process or its
connection, so a run that crashed blocks nothing (there the claim ignores the row's
``running_since``, which only tells ``jobs list``). SQLite has no such lock, so the row's
``running_since`` is a lease: a claim matches only while no run is in progress, or the one in
progress has gone on longer than the job's ``max_duration`` (its process is then taken for
dead). The advisory lock alone would not do: it says that nobody runs the job now, not that
this due time was run a moment ago by a run that has just finished.

Why not APScheduler's own job stores: it does not support several schedulers on one store
(each would run every job), and it reads the system clock. APScheduler only fires the ticks
(``jobs.scheduler``); what is due, and who runs it, is decided here.

**Every run is a security event** (``jobs:run``, target type ``job``, target id the job's name,
count the job's count), written with the run's end in its row once the job's function has
returned. An attempt fails if the function raises or its record cannot be written; it is tried
again, still under the claim (``Job.attempts``, waits doubling from ``Job.backoff``; jobs are
safe to run again), and after the last an ``error`` event with reason ``job_failed`` records
the run. Logs name the job and the exception's class, never its message (a database error's
text can quote a row). Nothing here raises into the scheduler: a tick that fails is logged,
and the next tick tries again.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import CursorResult, Table, func, or_, select, update
from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Outcome, Reason, TargetType
from sellervault.jobs.models import JobRunRow
from sellervault.jobs.registry import Job, Registry
from sellervault.runtime import Runtime
from sellervault.store.prepared import Prepared
from sellervault.store.upsert import insert_into

log = logging.getLogger("sellervault.jobs")

JOB_FAILED = Reason.JOB_FAILED  # (reason codes of jobs:run events)
JOB_RUNNING = Reason.JOB_RUNNING
JOB_HELD_OFF = Reason.JOB_HELD_OFF

_RUNS = cast(Table, JobRunRow.__table__)
_SCHEDULE = Prepared(select(_RUNS))


class RunStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """Every attempt failed (an ``error`` event says so)."""
    SKIPPED = "skipped"
    """Not claimed: not due (another runner took it), or a run of the job is in progress."""


@dataclass(frozen=True, slots=True)
class RunResult:
    job: str
    status: RunStatus
    count: int | None = None
    attempts: int = 0
    error: str | None = None
    """The class of the last attempt's exception, for a failed run."""


@dataclass(frozen=True, slots=True)
class JobState:
    """Where a job stands (``sellervault jobs list``); all None for a job no server has
    scheduled yet."""

    job: Job
    next_due_at: datetime | None
    running_since: datetime | None
    last_finished_at: datetime | None
    last_outcome: str | None
    last_count: int | None
    overdue: bool = False
    """Not run for a whole interval past its due time: no server is running its scheduler
    (none is up, or its job thread is stuck)."""


def job_lock_id(name: str) -> int:
    """The advisory lock id of a job: 64 bits of a domain-separated SHA-256 (two jobs sharing
    one would only wait for each other's runs)."""
    digest = hashlib.sha256(b"sellervault/jobs/" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Runner:
    """Claims and runs the jobs of ``registry`` on ``runtime``, recording each run as done by
    ``actor`` (the system for the scheduler, the CLI for a run by hand). ``attempts``, when
    given, overrides each job's own. Safe to share between threads. ``stopping``, once set,
    ends the waits between attempts and the tick's loop."""

    def __init__(self, runtime: Runtime, registry: Registry, actor: Actor, *,
                 attempts: int | None = None, stopping: threading.Event | None = None) -> None:
        if attempts is not None and attempts < 1:
            raise ValueError("a run has at least one attempt")
        self.runtime = runtime
        self.registry = registry
        self.actor = actor
        self.attempts = attempts
        self.stopping = stopping or threading.Event()

    # -- the scheduler's tick ----------------------------------------------------------------

    def run_due(self) -> list[RunResult]:
        """Run every job that is due, one after another; what each did. Raises nothing."""
        results = []
        for job in self.due_jobs():
            if self.stopping.is_set():
                break
            results.append(self.run_scheduled(job))
        return results

    def due_jobs(self) -> list[Job]:
        """The jobs due now (by the runtime's clock); jobs new to the database are scheduled
        one interval from now. None when the schedule cannot be read. Raises nothing."""
        try:
            return self._due_jobs()
        except Exception as exc:
            log.warning("jobs: the schedule could not be read (%s)", type(exc).__name__)
            return []

    def run_scheduled(self, job: Job) -> RunResult:
        """Claim and run ``job`` if it is still due (another process may have run it since);
        what it did. Raises nothing."""
        return self._run_safely(job, forced=False)

    def _due_jobs(self) -> list[Job]:
        rows = self._rows()
        now = self.runtime.clock.now()
        held_off = [job for job in self.registry
                    if job.name in rows and rows[job.name].next_due_at > now + job.interval]
        if held_off:
            self._bring_forward(held_off, now)
            rows = self._rows()
        new = [job for job in self.registry if job.name not in rows]
        if new:
            with self.runtime.store.transaction() as session:
                _add(session, new, now)
        # (a claim re-checks all of this; reading first only spares the database a write
        # per job and tick)
        return [job for job in self.registry
                if job.name in rows and rows[job.name].next_due_at <= now
                and (self._has_advisory_locks or not _leased(rows[job.name], job, now))]

    def _bring_forward(self, jobs: list[Job], now: datetime) -> None:
        """Jobs due further off than one interval from now, which no run ever sets: the row
        was moved (by someone holding the log's checkpoints off, say) or the clock went
        back. Each is made due now, and its ``jobs:run`` event (error, ``job_held_off``) is
        what the ``job-failed`` detector alerts on; the condition makes it once across
        processes."""
        with self.runtime.store.transaction() as session:
            for job in jobs:
                moved = cast(CursorResult[Any], session.execute(
                    update(_RUNS).where(_RUNS.c.name == job.name,
                                        _RUNS.c.next_due_at > now + job.interval)
                    .values(next_due_at=now)))
                if moved.rowcount == 1:
                    log.error("job %s was due later than one interval from now: run now",
                              job.name)
                    self._record(session, job, Outcome.ERROR, reason=JOB_HELD_OFF)

    # -- a run by hand -----------------------------------------------------------------------

    def run_now(self, name: str) -> RunResult:
        """Run the job ``name`` once, now, whether due or not (``UnknownJobError`` for a name
        no job has). It counts as the job's run: the next is due one interval later. A run in
        progress elsewhere is not overlapped: the result is ``SKIPPED``, recorded as a
        ``failed`` event."""
        job = self.registry.get(name)
        result = self._run_safely(job, forced=True)
        if result.status is RunStatus.SKIPPED:
            with self.runtime.store.transaction() as session:
                self._record(session, job, Outcome.FAILED, reason=JOB_RUNNING)
        return result

    # -- one run -----------------------------------------------------------------------------

    def _run_safely(self, job: Job, *, forced: bool) -> RunResult:
        try:
            return self._run(job, forced=forced)
        except Exception as exc:  # (the lock or the claim: the database is unreachable)
            log.warning("job %s: could not be claimed (%s)", job.name, type(exc).__name__)
            return RunResult(job.name, RunStatus.FAILED, error=type(exc).__name__)

    def _run(self, job: Job, *, forced: bool) -> RunResult:
        with self._exclusive(job) as held:
            run_id = self.claim(job, forced=forced) if held else None
            if run_id is None:
                return RunResult(job.name, RunStatus.SKIPPED)
            return self._attempt(job, run_id)

    @property
    def _has_advisory_locks(self) -> bool:
        return self.runtime.store.dialect == "postgresql"

    @contextmanager
    def _exclusive(self, job: Job) -> Iterator[bool]:
        """Whether this runner may run ``job`` now, held until the block ends. PostgreSQL: the
        job's advisory lock, taken without waiting, in a transaction on a connection of its
        own (idle while the run goes on). The lock ends with that transaction, so it is never
        left behind in the pool; a connection that cannot end it is discarded, which ends it
        too. SQLite: always; the claim's lease guards instead."""
        if not self._has_advisory_locks:
            yield True
            return
        with self.runtime.store.engine.connect() as connection:
            held = bool(connection.scalar(
                select(func.pg_try_advisory_xact_lock(job_lock_id(job.name)))))
            try:
                yield held
            finally:
                try:
                    connection.rollback()
                except Exception:
                    connection.invalidate()

    def claim(self, job: Job, *, forced: bool = False) -> str | None:
        """Claim the job's due run (``forced``: its run now, due or not), see the module's
        docstring; the claim's id, or None when the run was not free to claim. On PostgreSQL
        the caller holds the job's advisory lock (``_run``): the claim alone does not keep a
        run from overlapping the one before."""
        now = self.runtime.clock.now()
        run_id = secrets.token_hex(8)
        conditions = [_RUNS.c.name == job.name]
        if not forced:
            conditions.append(_RUNS.c.next_due_at <= now)
        if not self._has_advisory_locks:
            conditions.append(or_(_RUNS.c.running_since.is_(None),
                                  _RUNS.c.running_since <= now - job.max_duration))
        with self.runtime.store.transaction() as session:
            if forced:
                _add(session, [job], now)
            claimed = cast(CursorResult[Any], session.execute(
                update(_RUNS).where(*conditions)
                .values(next_due_at=now + job.interval, run_id=run_id, running_since=now)))
        return run_id if claimed.rowcount == 1 else None

    def _attempt(self, job: Job, run_id: str) -> RunResult:
        """Run the claimed job until an attempt succeeds or the attempts are spent, waiting
        ``job.backoff``, then twice that, and so on, between attempts."""
        attempts = self.attempts or job.attempts
        error = None
        attempt = 0
        while attempt < attempts:
            attempt += 1
            try:
                count = job.run(self.runtime)
                with self.runtime.store.transaction() as session:
                    self._finish(session, job, run_id, Outcome.SUCCESS, count)
                return RunResult(job.name, RunStatus.SUCCEEDED, count, attempt)
            except Exception as exc:
                error = type(exc).__name__
                log.warning("job %s: attempt %d of %d failed (%s)", job.name, attempt,
                            attempts, error)
            wait = job.backoff.total_seconds() * 2 ** (attempt - 1)
            if attempt < attempts and self.stopping.wait(wait):
                break  # (the server is stopping: no more attempts)
        try:
            with self.runtime.store.transaction() as session:
                self._finish(session, job, run_id, Outcome.ERROR, None, reason=JOB_FAILED)
        except Exception as exc:
            log.error("job %s: its failure could not be recorded (%s)", job.name,
                      type(exc).__name__)
        return RunResult(job.name, RunStatus.FAILED, None, attempt, error)

    def _finish(self, session: Session, job: Job, run_id: str, outcome: Outcome,
                count: int | None, reason: Reason | None = None) -> None:
        """The run's end in its row (if the claim is still this run's: on SQLite a run taken
        for dead may have been claimed again), and its event."""
        session.execute(
            update(_RUNS).where(_RUNS.c.name == job.name, _RUNS.c.run_id == run_id)
            .values(running_since=None, last_finished_at=self.runtime.clock.now(),
                    last_outcome=outcome.value, last_count=count))
        self._record(session, job, outcome, count=count, reason=reason)

    def _record(self, session: Session, job: Job, outcome: Outcome, *,
                count: int | None = None, reason: Reason | None = None) -> None:
        Auditor(self.runtime.audit, self.actor).record(
            session, Action.JOBS_RUN, outcome, target_type=TargetType.JOB, target_id=job.name,
            count=count, reason=reason)

    # -- where the jobs stand ----------------------------------------------------------------

    def _rows(self) -> dict[str, Any]:
        with self.runtime.store.read() as db:
            return {row.name: row for row in _SCHEDULE.all(db, {})}

    def states(self) -> list[JobState]:
        rows, now = self._rows(), self.runtime.clock.now()
        return [JobState(job, *_state_of(rows.get(job.name)),
                         overdue=_overdue(rows.get(job.name), job, now))
                for job in self.registry]


def _state_of(row: Any) -> tuple[Any, Any, Any, Any, Any]:
    if row is None:
        return (None,) * 5
    return (row.next_due_at, row.running_since, row.last_finished_at, row.last_outcome,
            row.last_count)


def _overdue(row: Any, job: Job, now: datetime) -> bool:
    """Whether ``job`` is a whole interval past due with no run in progress (a run whose
    lease has lapsed is no run: its process died)."""
    return (row is not None and row.next_due_at is not None and not _leased(row, job, now)
            and now > row.next_due_at + job.interval)


def _leased(row: Any, job: Job, now: datetime) -> bool:
    """Whether a run of ``job`` is in progress by its row (SQLite's lease)."""
    return row.running_since is not None and row.running_since > now - job.max_duration


def _add(session: Session, jobs: list[Job], now: datetime) -> None:
    """Rows for ``jobs`` that have none, first due one interval from ``now`` (a server just
    started does not run everything at once; an existing row is left as it is)."""
    session.execute(insert_into(session, _RUNS).values([
        {"name": job.name, "next_due_at": now + job.interval} for job in jobs
    ]).on_conflict_do_nothing(index_elements=[_RUNS.c.name]))
