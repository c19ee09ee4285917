"""deletion.deadlines: on the injected clock, a request not done is warned of at 24, 8 and 1
hours left and raises the overdue alarm at its deadline, each once (however often the job
runs, and with two runs at once); a request filed late enters at its stage; a cancelled
one is not warned of."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select

from sellervault.clock import ManualClock
from sellervault.deletion import deadlines, requests
from sellervault.monitoring.models import AlertRow
from sellervault.runtime import Runtime
from tests.deletion.helpers import OFFICER, events, ingest, officer


def _file(runtime: Runtime, **fields: object) -> requests.Request:
    return requests.file_request(runtime, officer(runtime), OFFICER, tenant_id="acme",  # type: ignore[arg-type]
                                 requested_by="DSR 1", **fields)


def _alerts(runtime: Runtime) -> list[tuple[str, str, str]]:
    with runtime.store.engine.connect() as connection:
        return [(row.rule, row.severity, row.subject) for row in connection.execute(
            select(AlertRow.rule, AlertRow.severity, AlertRow.subject).where(
                AlertRow.rule.startswith("deletion-")).order_by(AlertRow.created_at))]


def test_each_warning_once_at_24_8_and_1_hours_then_overdue(runtime: Runtime,
                                                            clock: ManualClock) -> None:
    ingest(runtime, "acme", 1)
    filed = _file(runtime, scope="tenant")  # due in 72 hours
    expected: list[tuple[str, str, str]] = []
    for hours, alert in ((48, None), (24, ("deletion-deadline", "medium")),
                         (8, ("deletion-deadline", "high")), (1, ("deletion-deadline", "high")),
                         (0, ("deletion-overdue", "critical"))):
        clock.set(filed.deadline - timedelta(hours=hours, seconds=1))
        assert deadlines.warn(runtime) == 0, hours  # a second early: nothing yet
        clock.advance(1)
        assert deadlines.warn(runtime) == (alert is not None), hours
        assert deadlines.warn(runtime) == 0  # the job again: nothing twice
        if alert is not None:
            expected.append((*alert, filed.id))
        assert _alerts(runtime) == expected
    clock.advance(timedelta(days=3))
    assert deadlines.warn(runtime) == 0
    assert [(e.criteria, e.count) for e in events(runtime, "deletions:due")] == [
        ("deletion-deadline", 24), ("deletion-deadline", 8), ("deletion-deadline", 1),
        ("deletion-overdue", 0)]


def test_a_request_filed_late_enters_at_its_stage(runtime: Runtime,
                                                  clock: ManualClock) -> None:
    ingest(runtime, "acme", 1)
    late = _file(runtime, scope="tenant", received_at=clock.now() - timedelta(hours=66))
    assert deadlines.warn(runtime) == 1
    assert _alerts(runtime) == [("deletion-deadline", "high", late.id)]  # 6 hours left


def test_a_cancelled_request_is_not_warned_of(runtime: Runtime, clock: ManualClock) -> None:
    ingest(runtime, "acme", 1)
    cancelled = _file(runtime, scope="tenant")
    requests.cancel_request(runtime, officer(runtime), OFFICER, cancelled.id)
    kept = _file(runtime, scope="tenant")
    clock.advance(timedelta(hours=73))
    assert deadlines.warn(runtime) == 1
    assert _alerts(runtime) == [("deletion-overdue", "critical", kept.id)]


def test_two_runs_at_once_warn_once(runtime: Runtime, clock: ManualClock) -> None:
    ingest(runtime, "acme", 1)
    for _ in range(3):
        filed = _file(runtime, scope="tenant")
        clock.set(filed.deadline - timedelta(hours=7))
        before = len(events(runtime, "deletions:due"))
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=lambda b=barrier: (b.wait(), deadlines.warn(runtime)))
                   for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        mine = [e for e in events(runtime, "deletions:due")[before:] if e.target_id == filed.id]
        assert len(mine) == 1
        assert [s for _, _, s in _alerts(runtime)].count(filed.id) == 1
