"""monitoring.detectors: a synthetic attack replayed with the injected clock raises exactly
the expected alerts and no others, on SQLite and PostgreSQL.

- 9 denials by one principal in 5 minutes: nothing; the 10th: one ``unauthorized-calls``
  alert; the 11th to 20th in the same window: no second one. 3 denied reveals: one alert.
- Denials spread over more than 5 minutes never reach the threshold: nothing.
- The next window's crossing is a new alert; another principal's count is its own.
- An unidentified caller is counted by address; sign-in failures are not denials here.
- An account locked after failed sign-ins: one ``login-failures`` alert.
- A canary touched: the account is disabled at once and a critical ``canary-access`` alert
  names it.
- Two detectors on two runtimes sharing Redis counters (two server processes): denials
  spread across both raise one alert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from sellervault import bootstrap
from sellervault.access.actions import Action
from sellervault.access.roles import Grant, Role
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import UnauthenticatedError
from sellervault.accounts.models import Account
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel, Outcome, Reason, TargetType
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.counters.errors import CountersUnavailableError
from sellervault.counters.redis import RedisCounters
from sellervault.monitoring import detectors
from sellervault.monitoring.models import AlertRow
from sellervault.runtime import Runtime
from tests.support import admin_of, make_person, system_auditor


@pytest.fixture
def watched(runtime: Runtime) -> Iterator[Runtime]:
    subscription = detectors.attach(runtime)
    yield runtime
    runtime.audit.subscribers.unsubscribe(subscription)


def deny(rt: Runtime, actor_id: str | None, times: int, action: Action = Action.ORDERS_READ,
         source_ip: str = "203.0.113.9") -> None:
    auditor = Auditor(rt.audit, Actor(Channel.API, actor_id=actor_id, source_ip=source_ip))
    for _ in range(times):
        with rt.store.transaction() as session:
            auditor.record(session, action, Outcome.DENIED, tenant_id="acme", status=403,
                           reason=Reason.FORBIDDEN)
    assert rt.audit.subscribers.wait_idle(10)


def alerts_of(rt: Runtime) -> list[Any]:
    with rt.store.engine.connect() as connection:
        return list(connection.execute(select(AlertRow).order_by(AlertRow.created_at)))


def test_the_tenth_denial_in_five_minutes_raises_one_alert(watched: Runtime) -> None:
    deny(watched, "acc_mallory", 9)
    assert alerts_of(watched) == []
    deny(watched, "acc_mallory", 1)
    [alert] = alerts_of(watched)
    assert (alert.rule, alert.severity, alert.principal_id, alert.status) == (
        "unauthorized-calls", "high", "acc_mallory", "open")
    deny(watched, "acc_mallory", 10)
    assert len(alerts_of(watched)) == 1


def test_three_denials_on_a_pii_route_raise_one_alert(watched: Runtime) -> None:
    deny(watched, "acc_mallory", 2, Action.ORDERS_REVEAL)
    assert alerts_of(watched) == []
    deny(watched, "acc_mallory", 1, Action.ORDERS_REVEAL)
    assert [a.rule for a in alerts_of(watched)] == ["unauthorized-calls"]


def test_denials_spread_wider_than_the_window_raise_nothing(
        watched: Runtime, clock: ManualClock) -> None:
    for _ in range(30):
        deny(watched, "acc_patient", 1)
        clock.advance(40)  # 7 or 8 in any 5 minutes
    assert alerts_of(watched) == []


def test_each_window_and_each_principal_counts_on_its_own(
        watched: Runtime, clock: ManualClock) -> None:
    deny(watched, "acc_mallory", 10)
    deny(watched, "acc_other", 9)
    clock.advance(6 * 60)
    deny(watched, "acc_mallory", 10)
    assert [a.principal_id for a in alerts_of(watched)] == ["acc_mallory", "acc_mallory"]


def test_an_unidentified_caller_is_counted_by_address_and_sign_ins_are_not_denials(
        watched: Runtime) -> None:
    deny(watched, None, 10, Action.SESSION_CREATE)
    assert alerts_of(watched) == []
    deny(watched, None, 10, Action.ORDERS_READ, source_ip="198.51.100.23")
    [alert] = alerts_of(watched)
    assert (alert.subject, alert.principal_id) == ("address:198.51.100.23", None)


def test_a_locked_account_raises_a_login_failures_alert(watched: Runtime) -> None:
    auditor = Auditor(watched.audit, Actor(Channel.API, source_ip="203.0.113.9"))
    with watched.store.transaction() as session:
        auditor.record(session, Action.ACCOUNTS_LOCK, Outcome.SUCCESS,
                       target_type=TargetType.ACCOUNT, target_id="acc_locked", count=5,
                       reason=Reason.TOO_MANY_FAILURES)
    assert watched.audit.subscribers.wait_idle(10)
    [alert] = alerts_of(watched)
    assert (alert.rule, alert.principal_id) == ("login-failures", "acc_locked")


def test_an_alert_is_an_event_naming_it_and_holds_no_pii(watched: Runtime) -> None:
    deny(watched, "acc_mallory", 10)
    [alert] = alerts_of(watched)
    with watched.store.engine.connect() as connection:
        [event] = connection.execute(select(EventRow).where(
            EventRow.action == "alerts:raise")).all()
    assert (event.target_id, event.criteria, event.channel) == (alert.id, "unauthorized-calls",
                                                                "system")


def test_two_processes_sharing_the_counters_raise_one_alert(
        runtime: Runtime, redis_counters: Callable[..., RedisCounters]) -> None:
    """Two runtimes on one database and one Redis (one vault's secret): 5 denials through
    each make the 10 that cross the threshold together."""
    secret = b"s" * 32
    first = Runtime(runtime.settings, runtime.store, runtime.keyring, runtime.clock,
                    counters=redis_counters(runtime.clock, secret))
    second = Runtime(runtime.settings, runtime.store, runtime.keyring, runtime.clock,
                     counters=redis_counters(runtime.clock, secret))
    subscriptions = [detectors.attach(first), detectors.attach(second)]
    try:
        for _ in range(5):
            deny(first, "acc_mallory", 1)
            deny(second, "acc_mallory", 1)
        assert [a.rule for a in alerts_of(runtime)] == ["unauthorized-calls"]
    finally:
        first.audit.subscribers.unsubscribe(subscriptions[0])
        second.audit.subscribers.unsubscribe(subscriptions[1])


def test_a_touched_canary_disables_the_account_at_once_and_raises_a_critical_alert(
        watched: Runtime, initialized: bootstrap.InitResult) -> None:
    service = accounts.create_service(watched, system_auditor(watched), admin_of(initialized),
                                      name="nosy reader", grants=[Grant(Role.ANALYST, "acme")])
    auditor = Auditor(watched.audit, Actor(Channel.API, actor_id=service.id,
                                           source_ip="203.0.113.9"))
    with watched.store.transaction() as session:
        auditor.record(session, Action.CANARIES_TOUCHED, Outcome.SUCCESS, tenant_id="acme",
                       target_type=TargetType.CANARY, target_id="ord_canary", count=1)
    assert watched.audit.subscribers.wait_idle(10)
    with pytest.raises(UnauthenticatedError):
        watched.store.call(accounts.authenticate, watched, service.api_key)
    [alert] = alerts_of(watched)
    assert (alert.rule, alert.severity, alert.principal_id) == ("canary-access", "critical",
                                                                service.id)
    with watched.store.engine.connect() as connection:
        [disabled] = connection.execute(select(EventRow).where(
            EventRow.action == "accounts:disable")).all()
    assert (disabled.target_id, disabled.reason, disabled.channel) == (
        service.id, "canary_access", "system")


# -- the rules added with the buyer's pseudonym and baselines ---------------------------------

def act(rt: Runtime, actor_id: str | None, action: Action, times: int = 1,
        outcome: Outcome = Outcome.SUCCESS, **fields: Any) -> None:
    """``times`` events of ``action`` by ``actor_id`` over the API, handled by the detectors
    before this returns."""
    auditor = Auditor(rt.audit, Actor(Channel.API, actor_id=actor_id, source_ip="203.0.113.9"))
    for _ in range(times):
        with rt.store.transaction() as session:
            auditor.record(session, action, outcome, **fields)
    assert rt.audit.subscribers.wait_idle(10)


def next_window(clock: ManualClock) -> None:
    """On to a second past the start of the next 5-minute window (and minute)."""
    now = clock.timestamp()
    clock.advance((now // 300 + 1) * 300 + 1 - now)


def rules_of(rt: Runtime) -> list[tuple[str, str]]:
    return [(alert.rule, alert.subject) for alert in alerts_of(rt)]


def reveal(rt: Runtime, actor_id: str, buyers: range, *, same_order: bool = False) -> None:
    for index in buyers:
        act(rt, actor_id, Action.ORDERS_REVEAL, tenant_id="acme", purpose="fulfillment",
            target_type=TargetType.ORDER, target_id="ord_1" if same_order else f"ord_{index}",
            buyer=f"byr_{index:032x}", count=1)


def tuned(rt: Runtime, **settings: Any) -> Runtime:
    """The same database, keys, clock and counters under other settings."""
    return Runtime(rt.settings.model_copy(update=settings), rt.store, rt.keyring, rt.clock,
                   counters=rt.counters)


@pytest.fixture
def person(watched: Runtime, initialized: bootstrap.InitResult) -> str:
    return make_person(watched, admin_of(initialized), email="vera.volume@example.test",
                       name="Vera Volume", grants=[Grant(Role.PII_READER, "acme")]).id


def _status(rt: Runtime, account_id: str) -> str:
    with rt.store.engine.connect() as connection:
        status: str = connection.execute(select(Account.status).where(
            Account.id == account_id)).scalar_one()
    return status


def test_the_twentieth_distinct_buyer_revealed_raises_one_alert_and_disables_the_person(
        watched: Runtime, person: str) -> None:
    reveal(watched, person, range(19))
    reveal(watched, person, range(5), same_order=False)  # the same buyers again: no more
    assert rules_of(watched) == []
    assert _status(watched, person) == "active"
    reveal(watched, person, range(19, 30))
    assert rules_of(watched) == [("retrieval-volume", person)]
    assert _status(watched, person) == "disabled"
    with watched.store.engine.connect() as connection:
        [disabled] = connection.execute(select(EventRow).where(
            EventRow.action == "accounts:disable")).all()
    assert (disabled.target_id, disabled.reason) == (person, "retrieval_volume")


def test_one_buyer_revealed_many_times_is_one_buyer(watched: Runtime, person: str) -> None:
    for _ in range(40):
        act(watched, person, Action.ORDERS_REVEAL, tenant_id="acme", target_id="ord_7",
            target_type=TargetType.ORDER, buyer="byr_" + "7" * 32, count=1)
    assert rules_of(watched) == []


def test_orders_without_a_buyer_pseudonym_count_by_order(watched: Runtime) -> None:
    act(watched, "acc_service", Action.ORDERS_REVEAL, tenant_id="acme", count=1,
        target_type=TargetType.ORDER, target_id="ord_same")
    for index in range(19):
        act(watched, "acc_service", Action.ORDERS_REVEAL, tenant_id="acme", count=1,
            target_type=TargetType.ORDER, target_id=f"ord_{index}")
    assert rules_of(watched) == [("retrieval-volume", "acc_service")]


def test_a_service_is_alerted_on_but_not_disabled_and_auto_lock_can_be_off(
        watched: Runtime, initialized: bootstrap.InitResult, person: str) -> None:
    service = accounts.create_service(watched, system_auditor(watched), admin_of(initialized),
                                      name="bulk reader", grants=[Grant(Role.ANALYST, "acme")])
    reveal(watched, service.id, range(20))
    assert _status(watched, service.id) == "active"
    unlocked = tuned(watched, auto_lock=False)
    subscription = detectors.attach(unlocked)
    try:
        reveal(unlocked, person, range(20))
    finally:
        unlocked.audit.subscribers.unsubscribe(subscription)
    assert _status(watched, person) == "active"
    assert sorted(rules_of(watched)) == sorted([("retrieval-volume", service.id),
                                                ("retrieval-volume", person)])


def test_the_request_rate_hard_cap_raises_one_alert_per_window(watched: Runtime,
                                                                clock: ManualClock) -> None:
    capped = tuned(watched, rate_hard_cap_per_minute=60)
    subscription = detectors.attach(capped)
    watched.audit.subscribers.unsubscribe(next(
        s for s in watched.audit.subscribers.subscriptions if s is not subscription))
    try:
        next_window(clock)
        act(capped, "acc_busy", Action.ORDERS_READ, 60)
        assert rules_of(capped) == []
        act(capped, "acc_busy", Action.ORDERS_READ, 30)
        assert rules_of(capped) == [("request-rate", "acc_busy")]
        clock.advance(60)  # the next minute, the same window: one alert per window
        act(capped, "acc_busy", Action.ORDERS_READ, 61)
        assert len(rules_of(capped)) == 1
    finally:
        capped.audit.subscribers.unsubscribe(subscription)


def test_no_rate_alert_while_the_baseline_warms_up_then_one_above_it(
        watched: Runtime, clock: ManualClock) -> None:
    """A new principal at 100 a minute is not unusual (no baseline yet, under the hard cap);
    after half an hour at 5 a minute, 60 a minute is usual (the floor) and 61 is not."""
    next_window(clock)
    act(watched, "acc_new", Action.ORDERS_READ, 100)
    for _ in range(31):
        clock.advance(60)
        act(watched, "acc_new", Action.ORDERS_READ, 5)
    assert rules_of(watched) == []
    next_window(clock)  # a fresh minute in a fresh window
    act(watched, "acc_new", Action.ORDERS_READ, 60)
    assert rules_of(watched) == []
    act(watched, "acc_new", Action.ORDERS_READ, 1)
    assert rules_of(watched) == [("request-rate", "acc_new")]


def test_five_lockouts_across_the_service_are_a_storm(watched: Runtime) -> None:
    for index in range(4):
        act(watched, None, Action.ACCOUNTS_LOCK, target_type=TargetType.ACCOUNT,
            target_id=f"acc_{index}", reason=Reason.TOO_MANY_FAILURES, count=5)
    assert [rule for rule, _ in rules_of(watched)] == ["login-failures"] * 4
    act(watched, None, Action.ACCOUNTS_DISABLE, target_type=TargetType.ACCOUNT,
        target_id="acc_4", reason=Reason.TOO_MANY_FAILURES, count=10)
    assert ("lockout-storm", "service") in rules_of(watched)
    act(watched, None, Action.ACCOUNTS_DISABLE, target_type=TargetType.ACCOUNT,
        target_id="acc_5", reason=Reason.INACTIVE)  # not a failed sign-in: not counted
    assert rules_of(watched).count(("lockout-storm", "service")) == 1


def test_a_sign_in_after_five_failures_is_an_alert_after_four_it_is_not(
        watched: Runtime) -> None:
    for account, failures in (("acc_four", 4), ("acc_five", 5)):
        act(watched, None, Action.SESSION_CREATE, failures, Outcome.DENIED,
            target_type=TargetType.ACCOUNT, target_id=account, status=401,
            reason=Reason.INVALID_CREDENTIALS)
        act(watched, None, Action.SESSION_CREATE, target_type=TargetType.ACCOUNT,
            target_id=account)
    assert rules_of(watched) == [("success-after-failures", "acc_five")]
    act(watched, None, Action.SESSION_CREATE, target_type=TargetType.ACCOUNT,
        target_id="acc_five")  # the success started the count again
    assert len(rules_of(watched)) == 1


def test_configuration_changes_raise_alerts_and_routine_ones_do_not(watched: Runtime) -> None:
    act(watched, "acc_admin", Action.GRANTS_ADD, tenant_id="acme", criteria="analyst")
    act(watched, "acc_operator", Action.KILLSWITCH_SET, 1, Outcome.DENIED, status=403,
        reason=Reason.FORBIDDEN)  # refused: unauthorized-calls counts it, nothing changed
    assert rules_of(watched) == []
    act(watched, "acc_operator", Action.KILLSWITCH_SET, target_type=TargetType.PII_REVEALS)
    act(watched, "acc_admin", Action.GRANTS_ADD, tenant_id="*", criteria="admin")
    assert rules_of(watched) == [("configuration-change", "killswitch:set"),
                                 ("configuration-change", "grants:add")]


def test_a_failed_verification_is_a_critical_alert(watched: Runtime) -> None:
    act(watched, None, Action.AUDIT_VERIFY, target_type=TargetType.SECURITY_EVENT, count=9)
    assert rules_of(watched) == []
    act(watched, None, Action.AUDIT_VERIFY, outcome=Outcome.FAILED,
        target_type=TargetType.SECURITY_EVENT, count=9)
    [alert] = alerts_of(watched)
    assert (alert.rule, alert.severity, alert.subject) == ("log-verification", "critical",
                                                           "service")


def test_a_synthetic_attack_raises_exactly_the_expected_alerts(
        watched: Runtime, clock: ManualClock, person: str) -> None:
    """Below every threshold: nothing. Then one scraping insider, one prober and one
    password sprayer, replayed on the injected clock: one alert per rule and subject."""
    next_window(clock)
    deny(watched, "acc_prober", 9)
    reveal(watched, person, range(19))
    act(watched, None, Action.SESSION_CREATE, 4, Outcome.DENIED,
        target_type=TargetType.ACCOUNT, target_id="acc_victim", reason=Reason.FORBIDDEN)
    act(watched, None, Action.SESSION_CREATE, target_type=TargetType.ACCOUNT,
        target_id="acc_victim")
    assert rules_of(watched) == []
    deny(watched, "acc_prober", 5)
    reveal(watched, person, range(19, 25))
    for index in range(5):
        act(watched, None, Action.ACCOUNTS_LOCK, target_type=TargetType.ACCOUNT,
            target_id=f"acc_sprayed{index}", reason=Reason.TOO_MANY_FAILURES, count=5)
    assert sorted(rules_of(watched)) == sorted(
        [("unauthorized-calls", "acc_prober"), ("retrieval-volume", person),
         ("lockout-storm", "service")]
        + [("login-failures", f"acc_sprayed{index}") for index in range(5)])


def test_a_canary_found_by_a_postal_code_alone_is_alerted_not_locked(
        watched: Runtime, person: str) -> None:
    """An honest search for a real buyer's ZIP code finds the canaries that share it: the
    critical alert, without disabling the searcher. By email or phone, the lock."""
    act(watched, person, Action.CANARIES_TOUCHED, tenant_id="acme", count=1,
        target_type=TargetType.CANARY, target_id="ord_canary", criteria="postal-code")
    assert rules_of(watched) == [("canary-access", person)]
    assert _status(watched, person) == "active"
    act(watched, person, Action.CANARIES_TOUCHED, tenant_id="acme", count=1,
        target_type=TargetType.CANARY, target_id="ord_canary",
        criteria="buyer-email+postal-code")
    assert _status(watched, person) == "disabled"


def test_a_tick_the_counters_fail_loses_nothing(watched: Runtime, person: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis restarting during a hand-over: what was not counted is counted at the next
    tick, so the twentieth buyer still disables the person (lost, it would be the 19th)."""
    real = watched.counters.distinct
    failures = iter([True])

    def blip(*args: Any, **kwargs: Any) -> int:
        if next(failures, False):
            raise CountersUnavailableError()
        return real(*args, **kwargs)

    monkeypatch.setattr(watched.counters, "distinct", blip)
    reveal(watched, person, range(20))
    assert _status(watched, person) == "disabled"
