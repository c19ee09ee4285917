"""Job functions for tests (ones that count their runs, fail, or wait to be let go), and
what the database says about runs: their rows and their security events."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from sellervault.audit.models import EventRow
from sellervault.jobs.models import JobRunRow
from sellervault.jobs.registry import Job, JobFunction
from sellervault.runtime import Runtime

INTERVAL = timedelta(seconds=60)
PII = "pat.buyer@example.test"  # in a failing job's message: it must reach no log


class Counting:
    """Counts its runs (from any thread) and reports ``count`` as what it did."""

    def __init__(self, count: int = 7) -> None:
        self.count = count
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, rt: Runtime) -> int:
        with self._lock:
            self.calls += 1
        return self.count


class Failing(Counting):
    """Raises, with PII in the message, on its first ``failures`` calls (all when None)."""

    def __init__(self, failures: int | None = None) -> None:
        super().__init__()
        self.failures = failures

    def __call__(self, rt: Runtime) -> int:
        super().__call__(rt)
        if self.failures is None or self.calls <= self.failures:
            raise ValueError(f"could not reach {PII}")
        return self.count


class Blocking(Counting):
    """Says it started, then waits until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, rt: Runtime) -> int:
        super().__call__(rt)
        self.started.set()
        assert self.release.wait(30), "the test never let the job go"
        return self.count


def job(name: str, run: JobFunction, interval: timedelta = INTERVAL, **options: Any) -> Job:
    return Job(name, interval, run, f"{name}, for a test", **options)


def job_row(rt: Runtime, name: str) -> Any | None:
    """The job's row as the database holds it (read without taking SQLite's writer)."""
    with rt.store.snapshot() as connection:
        return connection.execute(select(JobRunRow.__table__)
                                  .where(JobRunRow.name == name)).first()


def run_events(rt: Runtime) -> list[Any]:
    """Every ``jobs:run`` event, oldest first."""
    with rt.store.snapshot() as connection:
        return list(connection.execute(select(EventRow.__table__)
                                       .where(EventRow.action == "jobs:run")
                                       .order_by(EventRow.seq)))


def wait_until(condition: Callable[[], object], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)
