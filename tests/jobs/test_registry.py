"""jobs/registry.py: what a job is, and the jobs ``serve`` runs.

- A job has a name fit for an event's target id and a command line, a positive interval, at
  least one attempt; a registry holds each name once and finds a job by it (an unknown name is
  refused without being echoed).
- ``serve`` runs ``sessions-purge`` hourly; its function is the accounts service's own, and
  its run's event counts the sessions it deleted.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest

from sellervault import bootstrap
from sellervault.accounts import api_keys, lifecycle
from sellervault.accounts import service as accounts
from sellervault.accounts.models import SessionRow
from sellervault.audit import checkpoints, retention, reviews
from sellervault.clock import ManualClock
from sellervault.deletion import deadlines, execution
from sellervault.deletion import retention as order_retention
from sellervault.jobs.registry import (
    AUDIT_CHECKPOINT,
    JOBS,
    SESSIONS_PURGE,
    Job,
    Registry,
    UnknownJobError,
)
from sellervault.jobs.runner import Runner
from sellervault.jobs.scheduler import system_actor
from sellervault.notifications import service as notifications
from sellervault.records import service as records
from sellervault.runtime import Runtime
from tests.jobs.helpers import run_events


def nothing(rt: Runtime) -> int:
    return 0


@pytest.mark.parametrize("name", ["", "Sessions", "sessions purge", "-purge", "purge_all",
                                  "purge-", "a--b", "x" * 65, "purge\n"])
def test_a_job_name_is_lower_case_words_joined_by_hyphens(name: str) -> None:
    with pytest.raises(ValueError, match="lower-case words"):
        Job(name, timedelta(minutes=1), nothing, "a test")


@pytest.mark.parametrize("options", [
    {"interval": timedelta(0)}, {"interval": timedelta(seconds=-1)},
    {"max_duration": timedelta(0)}, {"attempts": 0}, {"backoff": timedelta(seconds=-1)},
])
def test_a_job_needs_a_positive_interval_and_at_least_one_attempt(
        options: dict[str, object]) -> None:
    fields: dict[str, object] = {"interval": timedelta(minutes=1), **options}
    with pytest.raises(ValueError, match="job tidy"):
        Job("tidy", run=nothing, summary="a test", **fields)  # type: ignore[arg-type]


def test_a_registry_holds_each_name_once_and_finds_jobs_by_it() -> None:
    first = Job("first", timedelta(minutes=1), nothing, "a test")
    second = Job("second", timedelta(hours=1), nothing, "a test")
    registry = Registry([first, second])
    assert list(registry) == [first, second] and registry.names == ["first", "second"]
    assert len(registry) == 2
    assert registry.get("second") is second
    with pytest.raises(UnknownJobError) as unknown:
        registry.get("pat.buyer@example.test")
    assert "pat.buyer" not in str(unknown.value)
    with pytest.raises(ValueError, match="two jobs are named first"):
        Registry([first, Job("first", timedelta(hours=2), nothing, "another")])


def test_serve_runs_the_account_and_log_jobs() -> None:
    """A signed checkpoint of the log every minute; sessions purged hourly; end dates looked
    at every five minutes (access stopped at the end date already: the job makes the status
    say so); inactivity and key expiry hourly; alert notifications every 15 seconds."""
    assert JOBS.names == ["audit-checkpoint", "sessions-purge", "account-end-dates",
                          "inactive-accounts", "api-key-expiry", "audit-retention",
                          "audit-review-reminder", "canaries-refresh", "deletion-deadlines",
                          "deletion-executions", "order-retention",
                          "alert-notifications"]
    assert JOBS.get("sessions-purge") is SESSIONS_PURGE
    assert SESSIONS_PURGE.interval == timedelta(hours=1)
    assert SESSIONS_PURGE.run is accounts.purge_sessions
    assert (AUDIT_CHECKPOINT.interval, AUDIT_CHECKPOINT.run) == (
        timedelta(seconds=60), checkpoints.write_checkpoint)
    assert [(job.interval, job.run) for job in list(JOBS)[2:]] == [
        (timedelta(minutes=5), lifecycle.disable_ended),
        (timedelta(hours=1), lifecycle.disable_inactive),
        (timedelta(hours=1), api_keys.warn_expiring),
        (timedelta(days=1), retention.remove_expired),
        (timedelta(days=1), reviews.remind),
        (timedelta(days=1), records.refresh_canaries),
        (timedelta(minutes=5), deadlines.warn),
        (timedelta(seconds=30), execution.resume_all),
        (timedelta(days=1), order_retention.remove_expired),
        (timedelta(seconds=15), notifications.deliver_due)]


def test_sessions_purge_as_a_job_records_how_many_sessions_it_deleted(
        rt: Runtime, clock: ManualClock, initialized: bootstrap.InitResult) -> None:
    long_ago = clock.now() - timedelta(days=3)
    with rt.store.transaction() as session:
        session.add(SessionRow(token_hash=secrets.token_bytes(32),
                               account_id=initialized.admin_id, created_at=long_ago,
                               last_seen_at=long_ago, expires_at=long_ago + timedelta(hours=8)))
    runner = Runner(rt, JOBS, system_actor())
    runner.run_due()
    clock.advance(SESSIONS_PURGE.interval)
    [result] = [r for r in runner.run_due() if r.job == "sessions-purge"]
    assert result.count == 1
    [event] = [e for e in run_events(rt) if e.target_id == "sessions-purge"]
    assert (event.target_id, event.outcome, event.count) == ("sessions-purge", "success", 1)
