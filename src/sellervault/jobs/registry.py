"""The periodic jobs ``serve`` runs: each a name, an interval and a function of the runtime
that returns a count of what it did (rows deleted, events checkpointed...).

A job's function opens its own transactions (``runtime.store``): short ones, since on SQLite a
transaction holds the one writer every request needs for its security event. A change that
must carry its own domain event commits it in the same transaction, as any operation does;
the run as a whole is recorded afterwards by the runner (``jobs:run``, with the count).

Jobs must be safe to run again, whole or in part: a failed attempt is retried, and a run whose
process dies is not finished by anyone but is the next due run's to do over.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from sellervault.accounts import api_keys, lifecycle
from sellervault.accounts import service as accounts
from sellervault.audit import checkpoints, retention, reviews
from sellervault.deletion import deadlines, execution
from sellervault.deletion import retention as order_retention
from sellervault.notifications import service as notifications
from sellervault.records import service as records
from sellervault.runtime import Runtime

JobFunction = Callable[[Runtime], int]
NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


class UnknownJobError(LookupError):
    """No job has that name."""


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    """Lower-case words with hyphens: the security event's target id and the CLI's name."""
    interval: timedelta
    """From one run's start to the next run's due time."""
    run: JobFunction
    summary: str
    """One line for ``sellervault jobs list --help`` and the operator's guide."""
    attempts: int = 3
    """Attempts per run before it is recorded as failed."""
    backoff: timedelta = timedelta(seconds=2)
    """The wait after the first failed attempt; it doubles after each further one."""
    max_duration: timedelta = timedelta(hours=1)
    """On SQLite, how long a claimed run may go on before another process takes it for dead
    (a process that died mid-run leaves its claim behind). PostgreSQL does not need it: the
    run's advisory lock ends with its holder's connection (``jobs.runner``)."""

    def __post_init__(self) -> None:
        if len(self.name) > 64 or not NAME.fullmatch(self.name):
            raise ValueError(f"job name {self.name!r}: lower-case words joined by hyphens")
        if self.interval <= timedelta(0) or self.max_duration <= timedelta(0):
            raise ValueError(f"job {self.name}: interval and max_duration must be positive")
        if self.attempts < 1 or self.backoff < timedelta(0):
            raise ValueError(f"job {self.name}: at least one attempt, and no negative backoff")


class Registry:
    """The jobs of one scheduler, by name, in the order they are run within a tick."""

    def __init__(self, jobs: Iterable[Job]) -> None:
        self._jobs: dict[str, Job] = {}
        for job in jobs:
            if job.name in self._jobs:
                raise ValueError(f"two jobs are named {job.name}")
            self._jobs[job.name] = job

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    def __len__(self) -> int:
        return len(self._jobs)

    def get(self, name: str) -> Job:
        try:
            return self._jobs[name]
        except KeyError:
            # (the name is not echoed: it is whatever was typed)
            raise UnknownJobError("no job has that name (sellervault jobs list)") from None

    @property
    def names(self) -> list[str]:
        return list(self._jobs)


SESSIONS_PURGE = Job(
    "sessions-purge", timedelta(hours=1), accounts.purge_sessions,
    "deletes the rows of sessions that ended (expired, idle or revoked) more than a day ago")

ACCOUNT_END_DATES = Job(
    "account-end-dates", timedelta(minutes=5), lifecycle.disable_ended,
    "disables accounts whose end date has passed (their access stopped at that moment)")
INACTIVE_ACCOUNTS = Job(
    "inactive-accounts", timedelta(hours=1), lifecycle.disable_inactive,
    "disables accounts unused for 90 days (never the last active administrators)")
API_KEY_EXPIRY = Job(
    "api-key-expiry", timedelta(hours=1), api_keys.warn_expiring,
    "records an api-keys:expiring event for each API key that ends within 30 days")

AUDIT_CHECKPOINT = Job(
    "audit-checkpoint", timedelta(seconds=60), checkpoints.write_checkpoint,
    "signs a checkpoint of the security log (Merkle root, chained) into the database and "
    "the checkpoint file; its count is the events newly covered")

AUDIT_RETENTION = Job(
    "audit-retention", timedelta(days=1), retention.remove_expired,
    "removes security events older than SELLERVAULT_AUDIT_RETENTION_DAYS (at least 365), "
    "up to a signed checkpoint, after signing a statement of what it removes; its count "
    "is the events deleted")

AUDIT_REVIEW_REMINDER = Job(
    "audit-review-reminder", timedelta(days=1), reviews.remind,
    "raises a log-review-due alert while the security log has gone 14 days without a "
    "recorded review; its count is 1 when it raised one")

CANARIES_REFRESH = Job(
    "canaries-refresh", timedelta(days=1), records.refresh_canaries,
    "moves every tenant's canary orders' dates forward (and seeds them where a tenant has "
    "none); its count is the canaries written")

DELETION_DEADLINES = Job(
    "deletion-deadlines", timedelta(minutes=5), deadlines.warn,
    "raises a deletion-deadline alert when a deletion request not yet done has 24, 8 and 1 "
    "hours left, and deletion-overdue when its deadline passes; its count is the alerts "
    "raised")

DELETION_EXECUTIONS = Job(
    "deletion-executions", timedelta(seconds=30), execution.resume_all,
    "runs every deletion request still executing (a large scope, begun by its execute "
    "call) on to completion, a batch per transaction; its count is the requests completed")

ORDER_RETENTION = Job(
    "order-retention", timedelta(days=1), order_retention.remove_expired,
    "erases buyer PII 30 days after delivery (or shipment) and removes orders 18 months "
    "after purchase, except those under a legal hold; its count is the orders changed")

ALERT_NOTIFICATIONS = Job(
    "alert-notifications", timedelta(seconds=15), notifications.deliver_due,
    "sends due alert notifications (webhook, e-mail), retrying failures with backoff; its "
    "count is the notifications delivered")

JOBS = Registry([AUDIT_CHECKPOINT, SESSIONS_PURGE, ACCOUNT_END_DATES, INACTIVE_ACCOUNTS,
                 API_KEY_EXPIRY, AUDIT_RETENTION, AUDIT_REVIEW_REMINDER, CANARIES_REFRESH,
                 DELETION_DEADLINES, DELETION_EXECUTIONS, ORDER_RETENTION,
                 ALERT_NOTIFICATIONS])
"""What ``serve`` runs and ``sellervault jobs`` knows."""
