"""Detectors: subscribers of the security log that count what they see in the shared
counters and raise alerts (``alerts``) when a rule's threshold is crossed.

They attach to the log of a serving process (``attach``; a command of the command line
attaches them for its own run) and receive every event it commits, after the commit, on a
thread of their own (``audit.subscribers``): a request never waits for them. They count in
the shared counters, so the events of every server process count together when Redis is
configured; the alert of a window is raised once (the alert's unique key), whichever process
crossed the threshold. A sliding count is compared with ``>= limit``, not on the way up: a
count that stays over its limit (an attack that goes on) raises the alert again in each new
5-minute window, and the alert's key (rule, subject, window) makes it one per window. Each
process remembers the alerts of the latest windows it raised (``Raised``), so a count that
stays high asks the database once per window, not once per event.

What an event says about itself is not trusted to switch a rule off: the channel label
(``X-SellerVault-Client: cli`` is a header any caller sets) does not decide whether a request
counts, and a caller's denials count for its account and for its address both.

Rules (PARAMETERS.md; the severity after the name):

- ``unauthorized-calls`` (high): 10 denied requests by one principal, or from one address,
  in 5 minutes, 3 on PII or operator routes (reveal, search, kill switches). An
  ``http:refused`` event counts for the refusals it stands for (its ``count``). Sign-in
  failures are the login rules'.
- ``request-rate`` (medium): a principal's requests (whatever their channel label) in one
  minute above its baseline (EWMA + 3 sigma, never below 60; ``baselines``; none while it
  warms up) or above the hard cap (``SELLERVAULT_RATE_HARD_CAP_PER_MINUTE``) at any time.
  Requests are tallied in the writer's thread (a dict increment; no wake-up of the
  detectors' thread per request, which cost a request hundreds of microseconds in the
  interpreter's lock) and handed to the shared counters once a second (``TICK``): the alert
  comes within that second.
- ``retrieval-volume`` (high): 20 distinct buyers revealed by one principal in 5 minutes, or
  a five-minute period above its baseline (never below 5). A *person* is disabled at once
  (``SELLERVAULT_AUTO_LOCK``); a service is not (its volume is its job). Reveals are tallied
  like requests, so the alert and the disabling come within a second of the crossing.
- ``canary-access`` (critical): a canary order read, revealed or found by a search
  (``canaries:touched``); the alert is raised, then the account that did it is disabled
  (``AUTO_LOCK``), unless the search named only a postal code (the alert alone: a real
  buyer's ZIP code). A disabling that fails is logged; it never costs the alert.
- ``login-failures`` (medium): an account locked after failed sign-ins.
- ``lockout-storm`` (high): 5 distinct accounts locked or disabled for failed sign-ins in 5
  minutes, across the service (spraying over many accounts; one account locked again and
  again is not a storm).
- ``success-after-failures`` (medium): a sign-in or a password change that succeeds after 5
  or more failed ones (of either: the same password and code, under the same lockout) on
  the same account within the hour.
- ``configuration-change`` (medium): a kill switch set or cleared, a key rotated, an
  account's networks changed, a privileged role granted or revoked; one alert per actor and
  target in a window (``change_subject``), so one change does not hide another's.
- ``log-verification`` (critical): ``audit verify`` found the log tampered with.
- ``job-failed`` (high; critical for the log's checkpoint and retention jobs): a periodic
  job's run failed (subject: the job). Checkpoints that stop are the tamper evidence of every
  event written meanwhile gone: someone must look.

Each alert raised is also sent out, when configured (``notifications``: enqueued in the
alert's transaction by ``alerts.raise_alert``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import UTC, datetime, timedelta

from sellervault.access.actions import Action
from sellervault.access.roles import Role
from sellervault.accounts import lifecycle
from sellervault.audit.events import Outcome, Reason, SecurityEvent
from sellervault.audit.log import event_time
from sellervault.audit.subscribers import CommittedEvent, Subscription
from sellervault.counters.interface import Window
from sellervault.monitoring import alerts
from sellervault.monitoring.baselines import Baseline
from sellervault.monitoring.models import SUBJECT_LENGTH
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
JOB_FAILED = "job-failed"
RULES = (UNAUTHORIZED_CALLS, REQUEST_RATE, RETRIEVAL_VOLUME, CANARY_ACCESS, LOGIN_FAILURES,
         LOCKOUT_STORM, SUCCESS_AFTER_FAILURES, CONFIGURATION_CHANGE, LOG_VERIFICATION,
         JOB_FAILED)
LOG_JOBS = frozenset({"audit-checkpoint", "audit-retention"})
"""The jobs whose failure leaves the log's tamper evidence behind (no checkpoint: events
written meanwhile can go unnoticed): a failed run of one is critical."""

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

BUYERS_REVEALED = Window("buyers-revealed", WINDOW, cap=1000)
VOLUME_LIMIT = 20
VOLUME_FLOOR = 5
VOLUME = Baseline("buyers-revealed", WINDOW, cap=1000)

POSTAL_CODE_ONLY = "postal-code"
"""The criteria of a search that named only a ZIP code (``records.service.search_criteria``)."""

LOCKED_ACCOUNTS = Window("locked-accounts", WINDOW, cap=1000)
"""The distinct accounts locked or disabled for failed sign-ins (a new name: the count of
lock events it replaces was another kind of data)."""
LOCKOUT_STORM_LIMIT = 5
SERVICE_SUBJECT = "service"
"""The subject of the rules about the service as a whole (a storm, the log)."""

SIGN_IN_FAILURES = Window("sign-in-failures", timedelta(hours=1), cap=1000)
SUCCESS_AFTER = 5
CREDENTIAL_ACTIONS = frozenset({Action.SESSION_CREATE, Action.PASSWORD_CHANGE})
"""What checks a person's password and code under the lockout (``accounts.service._prove``):
a guesser fails at either, and succeeds at either."""
PROVEN_REASONS = frozenset({Reason.PASSWORD_EXPIRED, Reason.PASSWORD_CHANGE_REQUIRED,
                            Reason.PASSWORD_POLICY, Reason.PASSWORD_REUSED,
                            Reason.PASSWORD_TOO_RECENT})
"""Refusals that come after the password and code were proven right (the lockout counts
them as a success): not a failed guess, and, after failures, a guess that succeeded."""

CONFIGURATION_ACTIONS = frozenset({
    Action.KILLSWITCH_SET, Action.KILLSWITCH_CLEAR, Action.KEYS_ROTATE_ROOT,
    Action.KEYS_ROTATE_TENANT, Action.ACCOUNTS_NETWORKS})
GRANT_ACTIONS = frozenset({Action.GRANTS_ADD, Action.GRANTS_REVOKE})
PRIVILEGED_ROLES = frozenset({Role.ADMIN.value, Role.OPERATOR.value,
                              Role.SECURITY_OFFICER.value, Role.PII_READER.value})

_LOCKED = frozenset({Action.ACCOUNTS_LOCK, Action.ACCOUNTS_DISABLE})
_RULE_ACTIONS = (frozenset({Action.CANARIES_TOUCHED, Action.AUDIT_VERIFY, Action.JOBS_RUN})
                 | CREDENTIAL_ACTIONS | _LOCKED | CONFIGURATION_ACTIONS | GRANT_ACTIONS)
RAISED_WINDOWS = 3
"""The windows whose raised alerts a process remembers (the current one, and late events'
windows)."""


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


def _denial_subjects(event: SecurityEvent) -> list[str]:
    """Whom a denial counts against: its principal and its address, both. Counted by one
    only, ten stolen keys used from one address stay at one denial each, and one key used
    from ten addresses stays under every address's limit."""
    subjects = []
    if event.actor.actor_id is not None:
        subjects.append(event.actor.actor_id)
    if event.actor.source_ip is not None:
        subjects.append("address:" + event.actor.source_ip)
    return subjects


def _weight(event: SecurityEvent) -> int:
    """The denials one event stands for: ``web.refusals`` coalesces the refusals of one
    address into one ``http:refused`` event whose ``count`` says how many (up to the
    window's cap, which is over every limit)."""
    return max(1, min(event.count or 1, DENIALS.cap))


def change_subject(event: SecurityEvent) -> str:
    """Who changed what (the actor, then the target): the subject of a configuration-change
    alert, so a second actor's change in the window is an alert of its own that names it."""
    actor = _subject(event) or event.actor.channel.value
    return actor if event.target_id is None else f"{actor}>{event.target_id}"


def fitting(subject: str) -> str:
    """``subject`` as an alert can hold it: one too long for the column (a long tenant id
    after an address) would fail the insert on PostgreSQL, and the alert with it. It keeps
    its start and ends with a digest of the whole, so two subjects stay two. Subjects are
    ids and addresses: no PII either way."""
    if len(subject) <= SUBJECT_LENGTH:
        return subject
    digest = hashlib.blake2b(subject.encode(), digest_size=8).hexdigest()
    return f"{subject[:SUBJECT_LENGTH - len(digest) - 1]}#{digest}"


class Raised:
    """The alerts this process raised (or found raised) in the latest windows: a count that
    stays over its limit asks again with every event, and only the first asks the database
    (where the alert's key makes it one across processes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, set[tuple[str, str]]] = {}

    def holds(self, rule: str, subject: str, window: str) -> bool:
        with self._lock:
            return (rule, subject) in self._windows.get(window, ())

    def add(self, rule: str, subject: str, window: str) -> None:
        with self._lock:
            self._windows.setdefault(window, set()).add((rule, subject))
            for old in sorted(self._windows)[:-RAISED_WINDOWS]:  # the times sort as they read
                del self._windows[old]


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
        self._raised = Raised()
        self._unraised: list[tuple[str, str]] = []
        """Rate alerts whose counts were handed over but whose insert failed: raised at the
        next tick (the count is not handed over twice, or the crossing would be lost)."""

    def wants(self, committed: CommittedEvent) -> bool:
        """The events some rule reads, asked in the writer's thread (keep it this cheap):
        requests and reveals are tallied here, and only the other rules' events queued. Every
        event of a principal counts as a request, whatever its channel says: the channel is a
        label the caller chooses (``web.context.new_state``), and must not switch a rule off."""
        event = committed.event
        principal = event.actor.actor_id
        if principal is not None:
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
            self._raise_rate_alerts()
            while requests:
                counted, count = next(iter(requests.items()))
                crossed = self._request_rate(*counted, count)
                del requests[counted]  # (counted: never handed over again)
                if crossed is not None:
                    self._unraised.append((counted[0], crossed))
                    self._raise_rate_alerts()
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
        if action in CREDENTIAL_ACTIONS:
            self._sign_in(committed)
        elif action in _LOCKED:
            self._locked(committed)
        elif action is Action.CANARIES_TOUCHED:
            self._canary(committed)
        elif action in CONFIGURATION_ACTIONS or (
                action in GRANT_ACTIONS and event.criteria in PRIVILEGED_ROLES):
            if event.outcome is Outcome.SUCCESS:
                self._raise(committed, CONFIGURATION_CHANGE, "medium", change_subject(event),
                            event.actor.actor_id)
        elif action is Action.AUDIT_VERIFY and event.outcome is Outcome.FAILED:
            self._raise(committed, LOG_VERIFICATION, "critical", SERVICE_SUBJECT, None)
        elif action is Action.JOBS_RUN and event.outcome is Outcome.ERROR \
                and event.target_id is not None:
            self._raise(committed, JOB_FAILED,
                        "critical" if event.target_id in LOG_JOBS else "high",
                        event.target_id, None)

    def _raise(self, committed: CommittedEvent, rule: str, severity: str, subject: str,
               principal_id: str | None) -> None:
        alerts.raise_alert(self._rt, rule, severity, fitting(subject), principal_id,
                           window_start(committed.occurred_at))

    def _raise_once(self, rule: str, severity: str, subject: str, principal_id: str | None,
                    window: str) -> None:
        """The alert of a count at or over its limit, unless this process raised it in
        this window already (``Raised``); remembered once the database has it."""
        subject = fitting(subject)
        if not self._raised.holds(rule, subject, window):
            alerts.raise_alert(self._rt, rule, severity, subject, principal_id, window)
            self._raised.add(rule, subject, window)

    # -- the rules -------------------------------------------------------------------------

    def _unauthorized(self, committed: CommittedEvent) -> None:
        event = committed.event
        weight = _weight(event)
        for subject in _denial_subjects(event):
            if self._over_denials(subject, event.action, weight):
                principal = event.actor.actor_id if subject == event.actor.actor_id else None
                self._raise_once(UNAUTHORIZED_CALLS, "high", subject, principal,
                                 window_start(committed.occurred_at))

    def _over_denials(self, subject: str, action: Action, weight: int) -> bool:
        """Count ``weight`` denials of ``subject`` (on sensitive routes, in their own count
        too); whether either count is at or over its limit now."""
        counters = self._rt.counters
        over = counters.hit(DENIALS, subject, times=weight) >= DENIAL_LIMIT
        if action in SENSITIVE_ACTIONS:
            over |= counters.hit(SENSITIVE_DENIALS, subject, times=weight) >= SENSITIVE_LIMIT
        return over

    def _request_rate(self, principal: str, minute: int, requests: int) -> str | None:
        """Hand ``requests`` of ``principal`` in ``minute`` to the counters; the window of
        the alert due if they crossed its limit (raised by the caller), else None."""
        counters = self._rt.counters
        level = self._rate.current(counters, principal, minute)
        count = counters.hit(self._rate.counts, f"{principal}@{minute}", times=requests)
        limit = level.limit(RATE_FLOOR)
        before = count - requests
        if _crossed(before, count, self._hard_cap) or (
                limit is not None and _crossed(before, count, limit)):
            return window_start(event_time(datetime.fromtimestamp(minute * 60, UTC)))
        return None

    def _raise_rate_alerts(self) -> None:
        """Raise the rate alerts due, oldest first; each is dropped only once raised (the
        alert's key makes a second try of one the database has already a no-op)."""
        while self._unraised:
            principal, window = self._unraised[0]
            alerts.raise_alert(self._rt, REQUEST_RATE, "medium", principal, principal, window)
            del self._unraised[0]

    def _retrieval_volume(self, principal: str, buyer: str, occurred_at: str) -> None:
        counters = self._rt.counters
        period = VOLUME.period_of(_moment(occurred_at).timestamp())
        level = VOLUME.current(counters, principal, period)
        in_window = counters.distinct(BUYERS_REVEALED, principal, buyer)
        in_period = counters.distinct(VOLUME.counts, f"{principal}@{period}", buyer)
        limit = level.limit(VOLUME_FLOOR)
        window = window_start(occurred_at)
        if self._raised.holds(RETRIEVAL_VOLUME, principal, window):
            return
        if in_window >= VOLUME_LIMIT or (limit is not None
                                         and _crossed(in_period - 1, in_period, limit)):
            if self._rt.settings.auto_lock:
                lifecycle.disable_for_volume(self._rt, principal)
            self._raise_once(RETRIEVAL_VOLUME, "high", principal, principal, window)

    def _canary(self, committed: CommittedEvent) -> None:
        """The critical alert first, then the lock, each attempted whatever became of the
        other: a lock that fails (the database busy) must not cost the alert, which is what
        brings someone to look. A canary found by a search for a postal code only is alerted
        on, not locked: an honest search for a real buyer's ZIP code finds the canaries that
        share it."""
        actor_id = committed.event.actor.actor_id
        subject = _subject(committed.event)
        by_place_only = committed.event.criteria == POSTAL_CODE_ONLY
        try:
            if subject is not None:
                self._raise(committed, CANARY_ACCESS, "critical", subject, actor_id)
        finally:
            if actor_id is not None and self._rt.settings.auto_lock and not by_place_only:
                self._disable_for_canary(actor_id)

    def _disable_for_canary(self, account_id: str) -> None:
        """Disable the account; a failure is logged (its id and the exception's type, never
        its message, which may quote a row) and not raised: the alert stands either way."""
        try:
            lifecycle.disable_for_canary(self._rt, account_id)
        except Exception as exc:
            log.error("canary-access: account %s not disabled: %s", account_id,
                      type(exc).__name__)

    def _locked(self, committed: CommittedEvent) -> None:
        event = committed.event
        if event.reason is not Reason.TOO_MANY_FAILURES or event.target_id is None:
            return
        if event.action is Action.ACCOUNTS_LOCK:
            self._raise(committed, LOGIN_FAILURES, "medium", event.target_id, event.target_id)
        locked = self._rt.counters.distinct(LOCKED_ACCOUNTS, SERVICE_SUBJECT, event.target_id)
        if locked >= LOCKOUT_STORM_LIMIT:
            self._raise_once(LOCKOUT_STORM, "high", SERVICE_SUBJECT, None,
                             window_start(committed.occurred_at))

    def _sign_in(self, committed: CommittedEvent) -> None:
        """A sign-in or a password change: a failed one counts against the account; one
        whose password and code were right (even if refused after, ``PROVEN_REASONS``) is
        the success the failures led to."""
        event = committed.event
        account = event.target_id
        if account is None:
            return
        counters = self._rt.counters
        proven = event.outcome is Outcome.SUCCESS or event.reason in PROVEN_REASONS
        if event.outcome is Outcome.DENIED and not proven:
            counters.hit(SIGN_IN_FAILURES, account)
        elif proven:
            if counters.count(SIGN_IN_FAILURES, account) >= SUCCESS_AFTER:
                self._raise(committed, SUCCESS_AFTER_FAILURES, "medium", account, account)
            counters.reset(SIGN_IN_FAILURES, account)


def attach(rt: Runtime) -> Subscription:
    """Start the detectors on this process's security log (``serve``, and the commands of
    the command line whose events a rule reads)."""
    detecting = Detectors(rt)
    return rt.audit.subscribe("detectors", detecting, detecting.wants,
                              tick=(TICK, detecting.tick))
