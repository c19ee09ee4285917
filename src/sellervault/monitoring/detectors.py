"""Detectors: subscribers of the security log that count what they see in the shared
counters and raise alerts (``alerts``) when a rule's threshold is crossed.

They attach to the log of a serving process (``attach``; a command of the command line
attaches them for its own run) and receive every event it commits, after the commit, on a
thread of their own (``audit.subscribers``): a request never waits for them. They count in
the shared counters, so the events of every server process count together when Redis is
configured; the alert of a window is raised once (the alert's unique key), whichever process
crossed the threshold. Every count is compared on the way up (``== limit``, or the step that
crosses a limit), so one crossing raises one alert and a count that stays high raises no
more in its window.

Rules (PARAMETERS.md; the severity after the name):

- ``unauthorized-calls`` (high): 10 denied requests by one principal in 5 minutes (by its
  address when no account was identified), 3 on PII or operator routes (reveal, search,
  kill switches). Sign-in failures are the login rules'.
- ``request-rate`` (medium): a principal's requests in one minute above its baseline (EWMA +
  3 sigma, never below 60; ``baselines``; none while it warms up) or above the hard cap
  (``SELLERVAULT_RATE_HARD_CAP_PER_MINUTE``) at any time. Requests are tallied in the
  writer's thread (a dict increment; no wake-up of the detectors' thread per request, which
  cost a request hundreds of microseconds in the interpreter's lock) and handed to the
  shared counters once a second (``TICK``): the alert comes within that second.
- ``retrieval-volume`` (high): 20 distinct buyers revealed by one principal in 5 minutes, or
  a five-minute period above its baseline (never below 5). A *person* is disabled at once
  (``SELLERVAULT_AUTO_LOCK``); a service is not (its volume is its job). Reveals are tallied
  like requests, so the alert and the disabling come within a second of the crossing.
- ``canary-access`` (critical): a canary order read, revealed or found by a search
  (``canaries:touched``); the account that did it is disabled at once (``AUTO_LOCK``),
  unless the search named only a postal code (the alert alone: a real buyer's ZIP code).
- ``login-failures`` (medium): an account locked after failed sign-ins.
- ``lockout-storm`` (high): 5 accounts locked or disabled for failed sign-ins in 5 minutes,
  across the service (spraying over many accounts).
- ``success-after-failures`` (medium): a sign-in that succeeds after 5 or more failed ones
  on the same account within the hour.
- ``configuration-change`` (medium): a kill switch set or cleared, a key rotated, an
  account's networks changed, a privileged role granted or revoked.
- ``log-verification`` (critical): ``audit verify`` found the log tampered with.

Each alert raised is also sent out, when configured (``notifications``: enqueued in the
alert's transaction by ``alerts.raise_alert``).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from sellervault.access.actions import Action
from sellervault.access.roles import Role
from sellervault.accounts import lifecycle
from sellervault.audit.events import Channel, Outcome, Reason, SecurityEvent
from sellervault.audit.log import event_time
from sellervault.audit.subscribers import CommittedEvent, Subscription
from sellervault.counters.interface import Window
from sellervault.monitoring import alerts
from sellervault.monitoring.baselines import Baseline
from sellervault.runtime import Runtime

log = logging.getLogger("sellervault.monitoring")

WINDOW = timedelta(minutes=5)
"""The window every alert is deduplicated in (and most rules count in)."""

UNAUTHORIZED_CALLS = "unauthorized-calls"
REQUEST_RATE = "request-rate"
RETRIEVAL_VOLUME = "retrieval-volume"
CANARY_ACCESS = "canary-access"
LOGIN_FAILURES = "login-failures"
LOCKOUT_STORM = "lockout-storm"
SUCCESS_AFTER_FAILURES = "success-after-failures"
CONFIGURATION_CHANGE = "configuration-change"
LOG_VERIFICATION = "log-verification"
RULES = (UNAUTHORIZED_CALLS, REQUEST_RATE, RETRIEVAL_VOLUME, CANARY_ACCESS, LOGIN_FAILURES,
         LOCKOUT_STORM, SUCCESS_AFTER_FAILURES, CONFIGURATION_CHANGE, LOG_VERIFICATION)

DENIALS = Window("denials", WINDOW, cap=1000)
SENSITIVE_DENIALS = Window("denials-sensitive", WINDOW, cap=1000)
DENIAL_LIMIT = 10
SENSITIVE_LIMIT = 3
SENSITIVE_ACTIONS = frozenset({Action.ORDERS_REVEAL, Action.ORDERS_SEARCH,
                               Action.KILLSWITCH_SET, Action.KILLSWITCH_CLEAR,
                               Action.KILLSWITCH_LIST})
SIGN_IN_ACTIONS = frozenset({Action.SESSION_CREATE, Action.PASSWORD_CHANGE,
                             Action.ENROLMENT_START, Action.ENROLMENT_FINISH})

TICK = 1.0
"""Seconds between the hand-overs of the tallied requests to the shared counters."""
RATE_FLOOR = 60
"""Requests a minute below which no principal's rate is unusual, whatever its baseline."""
REQUEST_CHANNELS = frozenset({Channel.API, Channel.DASHBOARD})

BUYERS_REVEALED = Window("buyers-revealed", WINDOW, cap=1000)
VOLUME_LIMIT = 20
VOLUME_FLOOR = 5
VOLUME = Baseline("buyers-revealed", WINDOW, cap=1000)

POSTAL_CODE_ONLY = "postal-code"
"""The criteria of a search that named only a ZIP code (``records.service.search_criteria``)."""

LOCKOUTS = Window("lockouts", WINDOW, cap=1000)
LOCKOUT_STORM_LIMIT = 5
SERVICE_SUBJECT = "service"
"""The subject of the rules about the service as a whole (a storm, the log)."""

SIGN_IN_FAILURES = Window("sign-in-failures", timedelta(hours=1), cap=1000)
SUCCESS_AFTER = 5

CONFIGURATION_ACTIONS = frozenset({
    Action.KILLSWITCH_SET, Action.KILLSWITCH_CLEAR, Action.KEYS_ROTATE_ROOT,
    Action.KEYS_ROTATE_TENANT, Action.ACCOUNTS_NETWORKS})
GRANT_ACTIONS = frozenset({Action.GRANTS_ADD, Action.GRANTS_REVOKE})
PRIVILEGED_ROLES = frozenset({Role.ADMIN.value, Role.OPERATOR.value,
                              Role.SECURITY_OFFICER.value, Role.PII_READER.value})

_LOCKED = frozenset({Action.ACCOUNTS_LOCK, Action.ACCOUNTS_DISABLE})
_RULE_ACTIONS = (frozenset({Action.CANARIES_TOUCHED, Action.SESSION_CREATE,
                            Action.AUDIT_VERIFY})
                 | _LOCKED | CONFIGURATION_ACTIONS | GRANT_ACTIONS)


def window_start(occurred_at: str) -> str:
    """The start of the fixed 5-minute window an event falls in (what an alert is unique
    by), in the events' own format."""
    moment = _moment(occurred_at)
    seconds = int(WINDOW.total_seconds())
    start = datetime.fromtimestamp(int(moment.timestamp()) // seconds * seconds,
                                   tz=moment.tzinfo)
    return event_time(start)


def _moment(occurred_at: str) -> datetime:
    return datetime.fromisoformat(occurred_at.replace("Z", "+00:00"))


def _subject(event: SecurityEvent) -> str | None:
    if event.actor.actor_id is not None:
        return event.actor.actor_id
    if event.actor.source_ip is not None:
        return "address:" + event.actor.source_ip
    return None


class Tally:
    """What the writers' threads saw since the last hand-over: requests per principal and
    minute, and the buyers each principal revealed (in order, each pair once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int], int] = {}
        self._reveals: dict[tuple[str, str], str] = {}

    def request(self, principal: str, minute: int) -> None:
        with self._lock:
            self._requests[(principal, minute)] = self._requests.get((principal, minute), 0) + 1

    def reveal(self, principal: str, buyer: str, occurred_at: str) -> None:
        with self._lock:
            self._reveals.setdefault((principal, buyer), occurred_at)

    def take(self) -> tuple[dict[tuple[str, int], int], dict[tuple[str, str], str]]:
        with self._lock:
            taken = self._requests, self._reveals
            self._requests, self._reveals = {}, {}
        return taken

    def give_back(self, requests: dict[tuple[str, int], int],
                  reveals: dict[tuple[str, str], str]) -> None:
        """What a tick could not hand over, counted again with what came since."""
        with self._lock:
            for minute, count in requests.items():
                self._requests[minute] = self._requests.get(minute, 0) + count
            for revealed, occurred_at in reveals.items():
                self._reveals.setdefault(revealed, occurred_at)


def _crossed(before: float, after: float, limit: float) -> bool:
    """Whether a count moving from ``before`` to ``after`` went past ``limit`` just now."""
    return before <= limit < after


class Detectors:
    """Every rule, as one subscriber."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._hard_cap = rt.settings.rate_hard_cap_per_minute
        self._rate = Baseline("request-rate", timedelta(minutes=1), cap=self._hard_cap + 1)
        self._tally = Tally()

    def wants(self, committed: CommittedEvent) -> bool:
        """The events some rule reads, asked in the writer's thread (keep it this cheap):
        requests and reveals are tallied here, and only the other rules' events queued."""
        event = committed.event
        principal = event.actor.actor_id
        if principal is not None and event.actor.channel in REQUEST_CHANNELS:
            self._tally.request(principal, self._rate.period_of(
                _moment(committed.occurred_at).timestamp()))
        if (event.action is Action.ORDERS_REVEAL and event.outcome is Outcome.SUCCESS
                and principal is not None and event.target_id is not None):
            # No email or phone: the order stands for its buyer.
            self._tally.reveal(principal, event.buyer or "order:" + event.target_id,
                               committed.occurred_at)
        return event.outcome is Outcome.DENIED or event.action in _RULE_ACTIONS

    def tick(self) -> None:
        """Hand what was tallied to the shared counters: ``request-rate`` for a principal
        whose minute went past its limit, ``retrieval-volume`` for one whose buyers did.
        If the counters fail part-way (Redis restarting), what was not handed over goes back
        into the tally for the next tick, and the failure is raised (and logged)."""
        requests, reveals = self._tally.take()
        try:
            while requests:
                counted, count = next(iter(requests.items()))
                self._request_rate(*counted, count)
                del requests[counted]
            while reveals:
                revealed, occurred_at = next(iter(reveals.items()))
                self._retrieval_volume(*revealed, occurred_at)
                del reveals[revealed]
        finally:
            self._tally.give_back(requests, reveals)

    def __call__(self, committed: CommittedEvent) -> None:
        event = committed.event
        action = event.action
        if event.outcome is Outcome.DENIED and action not in SIGN_IN_ACTIONS:
            self._unauthorized(committed)
        if action is Action.SESSION_CREATE:
            self._sign_in(committed)
        elif action in _LOCKED:
            self._locked(committed)
        elif action is Action.CANARIES_TOUCHED:
            self._canary(committed)
        elif action in CONFIGURATION_ACTIONS or (
                action in GRANT_ACTIONS and event.criteria in PRIVILEGED_ROLES):
            if event.outcome is Outcome.SUCCESS:
                self._raise(committed, CONFIGURATION_CHANGE, "medium", action.value,
                            event.actor.actor_id)
        elif action is Action.AUDIT_VERIFY and event.outcome is Outcome.FAILED:
            self._raise(committed, LOG_VERIFICATION, "critical", SERVICE_SUBJECT, None)

    def _raise(self, committed: CommittedEvent, rule: str, severity: str, subject: str,
               principal_id: str | None) -> None:
        alerts.raise_alert(self._rt, rule, severity, subject, principal_id,
                           window_start(committed.occurred_at))

    # -- the rules -------------------------------------------------------------------------

    def _unauthorized(self, committed: CommittedEvent) -> None:
        event = committed.event
        subject = _subject(event)
        if subject is None:
            return
        crossed = self._rt.counters.hit(DENIALS, subject) == DENIAL_LIMIT
        if event.action in SENSITIVE_ACTIONS:
            crossed |= self._rt.counters.hit(SENSITIVE_DENIALS, subject) == SENSITIVE_LIMIT
        if crossed:
            self._raise(committed, UNAUTHORIZED_CALLS, "high", subject, event.actor.actor_id)

    def _request_rate(self, principal: str, minute: int, requests: int) -> None:
        counters = self._rt.counters
        level = self._rate.current(counters, principal, minute)
        count = counters.hit(self._rate.counts, f"{principal}@{minute}", times=requests)
        limit = level.limit(RATE_FLOOR)
        before = count - requests
        if _crossed(before, count, self._hard_cap) or (
                limit is not None and _crossed(before, count, limit)):
            start = event_time(datetime.fromtimestamp(minute * 60, UTC))
            alerts.raise_alert(self._rt, REQUEST_RATE, "medium", principal, principal,
                               window_start(start))

    def _retrieval_volume(self, principal: str, buyer: str, occurred_at: str) -> None:
        counters = self._rt.counters
        period = VOLUME.period_of(_moment(occurred_at).timestamp())
        level = VOLUME.current(counters, principal, period)
        in_window = counters.distinct(BUYERS_REVEALED, principal, buyer)
        in_period = counters.distinct(VOLUME.counts, f"{principal}@{period}", buyer)
        limit = level.limit(VOLUME_FLOOR)
        if in_window == VOLUME_LIMIT or (limit is not None
                                         and _crossed(in_period - 1, in_period, limit)):
            if self._rt.settings.auto_lock:
                lifecycle.disable_for_volume(self._rt, principal)
            alerts.raise_alert(self._rt, RETRIEVAL_VOLUME, "high", principal, principal,
                               window_start(occurred_at))

    def _canary(self, committed: CommittedEvent) -> None:
        """Lock first, then the alert: the account is stopped even if the alert fails. A
        canary found by a search for a postal code only is alerted on, not locked: an honest
        search for a real buyer's ZIP code finds the canaries that share it."""
        actor_id = committed.event.actor.actor_id
        subject = _subject(committed.event)
        by_place_only = committed.event.criteria == POSTAL_CODE_ONLY
        if actor_id is not None and self._rt.settings.auto_lock and not by_place_only:
            lifecycle.disable_for_canary(self._rt, actor_id)
        if subject is not None:
            self._raise(committed, CANARY_ACCESS, "critical", subject, actor_id)

    def _locked(self, committed: CommittedEvent) -> None:
        event = committed.event
        if event.reason is not Reason.TOO_MANY_FAILURES or event.target_id is None:
            return
        if event.action is Action.ACCOUNTS_LOCK:
            self._raise(committed, LOGIN_FAILURES, "medium", event.target_id, event.target_id)
        if self._rt.counters.hit(LOCKOUTS, SERVICE_SUBJECT) == LOCKOUT_STORM_LIMIT:
            self._raise(committed, LOCKOUT_STORM, "high", SERVICE_SUBJECT, None)

    def _sign_in(self, committed: CommittedEvent) -> None:
        event = committed.event
        account = event.target_id
        if account is None:
            return
        counters = self._rt.counters
        if event.outcome is Outcome.DENIED:
            counters.hit(SIGN_IN_FAILURES, account)
        elif event.outcome is Outcome.SUCCESS:
            if counters.count(SIGN_IN_FAILURES, account) >= SUCCESS_AFTER:
                self._raise(committed, SUCCESS_AFTER_FAILURES, "medium", account, account)
            counters.reset(SIGN_IN_FAILURES, account)


def attach(rt: Runtime) -> Subscription:
    """Start the detectors on this process's security log (``serve``, and the commands of
    the command line whose events a rule reads)."""
    detecting = Detectors(rt)
    return rt.audit.subscribe("detectors", detecting, detecting.wants,
                              tick=(TICK, detecting.tick))
