"""Detectors: subscribers of the security log that count what they see in the shared
counters and raise alerts (``alerts``) when a rule's threshold is crossed.

They attach to the log of a serving process (``attach``) and receive every event it
commits, after the commit, on a thread of their own (``audit.subscribers``): a request never
waits for them. They count in the shared counters, so the events of every server process
count together when Redis is configured; the alert of a window is raised once (the alert's
unique key), whichever process crossed the threshold.

Rules (PARAMETERS.md):

- ``unauthorized-calls`` (high): 10 denied requests by one principal in 5 minutes (by its
  address when no account was identified), 3 on PII or operator routes (reveal, search,
  kill switches). Sign-in failures are the next rule's.
- ``login-failures`` (medium): an account locked after failed sign-ins.
- ``canary-access`` (critical): a canary order read, revealed or found by a search
  (``canaries:touched``, written by the records service); the account that did it is
  disabled at once (its next request is refused), until a security officer or an
  administrator re-enables it.

Each alert raised is also sent out, when configured (``notifications``: enqueued in the
alert's transaction by ``alerts.raise_alert``).

Not built yet: request rate, retrieval volume, lockout storms, success after many failures,
configuration changes, failed verification.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sellervault.access.actions import Action
from sellervault.accounts import lifecycle
from sellervault.audit.events import Outcome, SecurityEvent
from sellervault.audit.log import event_time
from sellervault.audit.subscribers import CommittedEvent, Subscription
from sellervault.counters.interface import Window
from sellervault.monitoring import alerts
from sellervault.runtime import Runtime

log = logging.getLogger("sellervault.monitoring")

WINDOW = timedelta(minutes=5)
DENIALS = Window("denials", WINDOW, cap=1000)
SENSITIVE_DENIALS = Window("denials-sensitive", WINDOW, cap=1000)
DENIAL_LIMIT = 10
SENSITIVE_LIMIT = 3
SENSITIVE_ACTIONS = frozenset({Action.ORDERS_REVEAL, Action.ORDERS_SEARCH,
                               Action.KILLSWITCH_SET, Action.KILLSWITCH_CLEAR,
                               Action.KILLSWITCH_LIST})
SIGN_IN_ACTIONS = frozenset({Action.SESSION_CREATE, Action.PASSWORD_CHANGE,
                             Action.ENROLMENT_START, Action.ENROLMENT_FINISH})
UNAUTHORIZED_CALLS = "unauthorized-calls"
LOGIN_FAILURES = "login-failures"
CANARY_ACCESS = "canary-access"
_RULE_ACTIONS = frozenset({Action.ACCOUNTS_LOCK, Action.CANARIES_TOUCHED})


def window_start(occurred_at: str) -> str:
    """The start of the fixed 5-minute window an event falls in (what an alert is unique
    by), in the events' own format."""
    moment = datetime.fromisoformat(occurred_at.replace("Z", "+00:00"))
    seconds = int(WINDOW.total_seconds())
    start = datetime.fromtimestamp(int(moment.timestamp()) // seconds * seconds,
                                   tz=moment.tzinfo)
    return event_time(start)


def _subject(event: SecurityEvent) -> str | None:
    if event.actor.actor_id is not None:
        return event.actor.actor_id
    if event.actor.source_ip is not None:
        return "address:" + event.actor.source_ip
    return None


def wanted(committed: CommittedEvent) -> bool:
    """The events some rule reads (asked in the writer's thread: keep it this cheap)."""
    event = committed.event
    return event.outcome is Outcome.DENIED or event.action in _RULE_ACTIONS


class Detectors:
    """Every rule, as one subscriber."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def __call__(self, committed: CommittedEvent) -> None:
        event = committed.event
        if event.outcome is Outcome.DENIED and event.action not in SIGN_IN_ACTIONS:
            self._unauthorized(committed)
        elif event.action is Action.ACCOUNTS_LOCK and event.target_id is not None:
            alerts.raise_alert(self._rt, LOGIN_FAILURES, "medium", event.target_id,
                               event.target_id, window_start(committed.occurred_at))
        elif event.action is Action.CANARIES_TOUCHED:
            self._canary(committed)

    def _canary(self, committed: CommittedEvent) -> None:
        """Lock first, then the alert: the account is stopped even if the alert fails."""
        actor_id = committed.event.actor.actor_id
        subject = _subject(committed.event)
        if actor_id is not None:
            lifecycle.disable_for_canary(self._rt, actor_id)
        if subject is not None:
            alerts.raise_alert(self._rt, CANARY_ACCESS, "critical", subject, actor_id,
                               window_start(committed.occurred_at))

    def _unauthorized(self, committed: CommittedEvent) -> None:
        event = committed.event
        subject = _subject(event)
        if subject is None:
            return
        crossed = self._rt.counters.hit(DENIALS, subject) == DENIAL_LIMIT
        if event.action in SENSITIVE_ACTIONS:
            crossed |= self._rt.counters.hit(SENSITIVE_DENIALS, subject) == SENSITIVE_LIMIT
        if crossed:
            alerts.raise_alert(self._rt, UNAUTHORIZED_CALLS, "high", subject,
                               event.actor.actor_id, window_start(committed.occurred_at))


def attach(rt: Runtime) -> Subscription:
    """Start the detectors on this process's security log (``serve``)."""
    return rt.audit.subscribe("detectors", Detectors(rt), wanted)
