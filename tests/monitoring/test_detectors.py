"""monitoring.detectors: a synthetic attack replayed with the injected clock raises exactly
the expected alerts and no others, on SQLite and PostgreSQL.

- 9 denials by one principal in 5 minutes: nothing; the 10th: one ``unauthorized-calls``
  alert for the principal and one for its address; the 11th to 20th in the same window: no
  more. 3 denied reveals: the same.
- Denials spread over more than 5 minutes never reach the threshold: nothing.
- The next window's crossing is a new alert; another principal's count is its own.
- An unidentified caller is counted by address; sign-in failures are not denials here.
- An account locked after failed sign-ins: one ``login-failures`` alert.
- A canary touched: the account is disabled at once and a critical ``canary-access`` alert
  names it.
- Two detectors on two runtimes sharing Redis counters (two server processes): denials
  spread across both raise one alert.
- Evasions (at the end): a ``cli`` client label, an attack that goes on past its first
  window, keys that share an address, coalesced refusals, a second admin's change, one
  account locked again and again, a canary lock the database refuses, password-change
  guesses: each gets its alert.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from sellervault import bootstrap
from sellervault.access.actions import Action
from sellervault.access.roles import Grant, Role
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import UnauthenticatedError
from sellervault.accounts.models import Account
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import SYSTEM_ACTOR, Actor, Channel, Outcome, Reason, TargetType
from sellervault.audit.log import event_time
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.counters.errors import CountersUnavailableError
from sellervault.counters.redis import RedisCounters
from sellervault.monitoring import detectors
from sellervault.monitoring.models import AlertRow
from sellervault.runtime import Runtime
from sellervault.web.context import CLIENT_HEADER, new_state
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
    assert sorted((a.rule, a.severity, a.subject, a.principal_id, a.status)
                  for a in alerts_of(watched)) == [
        ("unauthorized-calls", "high", "acc_mallory", "acc_mallory", "open"),
        ("unauthorized-calls", "high", "address:203.0.113.9", None, "open")]
    deny(watched, "acc_mallory", 10)
    assert len(alerts_of(watched)) == 2


def test_three_denials_on_a_pii_route_raise_one_alert(watched: Runtime) -> None:
    deny(watched, "acc_mallory", 2, Action.ORDERS_REVEAL)
    assert alerts_of(watched) == []
    deny(watched, "acc_mallory", 1, Action.ORDERS_REVEAL)
    assert sorted(rules_of(watched)) == [("unauthorized-calls", "acc_mallory"),
                                         ("unauthorized-calls", "address:203.0.113.9")]


def test_denials_spread_wider_than_the_window_raise_nothing(
        watched: Runtime, clock: ManualClock) -> None:
    for _ in range(30):
        deny(watched, "acc_patient", 1)
        clock.advance(40)  # 7 or 8 in any 5 minutes
    assert alerts_of(watched) == []


def test_each_window_and_each_principal_counts_on_its_own(
        watched: Runtime, clock: ManualClock) -> None:
    deny(watched, "acc_mallory", 10)
    deny(watched, "acc_other", 9, source_ip="203.0.113.99")
    clock.advance(6 * 60)
    deny(watched, "acc_mallory", 10)
    assert Counter(subject for _, subject in rules_of(watched)) == {
        "acc_mallory": 2, "address:203.0.113.9": 2}


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
    [alert] = [a for a in alerts_of(watched) if a.subject == "acc_mallory"]
    with watched.store.engine.connect() as connection:
        [event] = connection.execute(select(EventRow).where(
            EventRow.action == "alerts:raise", EventRow.target_id == alert.id)).all()
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
        assert sorted(rules_of(runtime)) == [("unauthorized-calls", "acc_mallory"),
                                             ("unauthorized-calls", "address:203.0.113.9")]
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


def test_a_rate_alert_whose_insert_failed_is_raised_at_the_next_tick(
        watched: Runtime, clock: ManualClock) -> None:
    """Above its baseline (under the hard cap), a principal's minute crosses its limit while
    the database refuses the alert: its requests are handed over once, and the alert (not
    the count) waits for the next tick. Counted again, they would sit above the limit
    already and never cross it: the alert lost."""
    next_window(clock)
    for _ in range(31):  # a baseline of 5 a minute: its limit is the floor, 60
        clock.advance(60)
        act(watched, "acc_steady", Action.ORDERS_READ, 5)
    next_window(clock)
    with refusing(watched, "INSERT", "alerts"):
        act(watched, "acc_steady", Action.ORDERS_READ, 70)
    assert rules_of(watched) == []
    act(watched, "acc_calm", Action.ORDERS_READ, 1)  # a later tick
    assert rules_of(watched) == [("request-rate", "acc_steady")]


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
    assert sorted(rules_of(watched)) == [("configuration-change", "acc_admin"),
                                         ("configuration-change", "acc_operator")]


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
        [("unauthorized-calls", "acc_prober"), ("unauthorized-calls", "address:203.0.113.9"),
         ("retrieval-volume", person),
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


# -- evasions: what an attacker did to stay under the rules, and the alert it now gets -------

@pytest.fixture
def capped(watched: Runtime) -> Iterator[Runtime]:
    """The detectors alone on a runtime whose hard cap is 60 requests a minute."""
    rt = tuned(watched, rate_hard_cap_per_minute=60)
    subscription = detectors.attach(rt)
    for other in list(watched.audit.subscribers.subscriptions):
        if other is not subscription:
            watched.audit.subscribers.unsubscribe(other)
    yield rt
    rt.audit.subscribers.unsubscribe(subscription)


def test_a_client_header_saying_cli_does_not_hide_requests_from_the_rate_rule(
        capped: Runtime, clock: ManualClock) -> None:
    """``X-SellerVault-Client: cli`` is a label any caller sets: a key over the hard cap
    with it set is over the hard cap."""
    state = new_state(capped, "203.0.113.9", [(CLIENT_HEADER, b"cli")])
    actor = replace(state.auditor.actor, actor_id="acc_labelled")
    assert actor.channel is Channel.CLI
    next_window(clock)
    auditor = Auditor(capped.audit, actor)
    for _ in range(61):
        with capped.store.transaction() as session:
            auditor.record(session, Action.ORDERS_READ, Outcome.SUCCESS, tenant_id="acme")
    assert capped.audit.subscribers.wait_idle(10)
    assert rules_of(capped) == [("request-rate", "acc_labelled")]


def test_a_sustained_attack_raises_an_alert_in_every_window_and_a_slow_one_none(
        watched: Runtime, clock: ManualClock) -> None:
    """One denial every 10 s for 30 minutes stays over 10 in 5 minutes all along: one
    alert in each of the six windows (for the key, and for its address). One every 40 s
    (8 in any 5 minutes) from elsewhere: none."""
    next_window(clock)
    for tick in range(180):
        deny(watched, "acc_steady", 1, source_ip="203.0.113.10")
        if tick % 4 == 0:
            deny(watched, "acc_patient", 1, source_ip="203.0.113.11")
        clock.advance(10)
    assert Counter(subject for _, subject in rules_of(watched)) == {
        "acc_steady": 6, "address:203.0.113.10": 6}
    assert {alert.window_start for alert in alerts_of(watched)} == {
        detectors.window_start(event_time(clock.now() - timedelta(minutes=5 * k + 1)))
        for k in range(6)}


def test_stolen_keys_used_from_one_address_are_counted_by_the_address(
        watched: Runtime) -> None:
    """Ten keys denied once each from one address: no key is at 10, the address is."""
    for index in range(10):
        deny(watched, f"acc_stolen{index}", 1, source_ip="198.51.100.77")
    assert rules_of(watched) == [("unauthorized-calls", "address:198.51.100.77")]


def refused(rt: Runtime, address: str, count: int) -> None:
    """One ``http:refused`` event standing for ``count`` refusals (``web.refusals``)."""
    auditor = Auditor(rt.audit, Actor(Channel.API, source_ip=address, request_id="r" * 16))
    with rt.store.transaction() as session:
        auditor.record(session, Action.HTTP_REFUSED, Outcome.DENIED,
                       reason=Reason.TOO_MANY_CONNECTIONS, count=count)
    assert rt.audit.subscribers.wait_idle(10)


def test_a_coalesced_refusal_counts_every_refusal_it_stands_for(watched: Runtime) -> None:
    refused(watched, "198.51.100.8", 9)
    assert rules_of(watched) == []
    refused(watched, "198.51.100.9", 10)
    assert rules_of(watched) == [("unauthorized-calls", "address:198.51.100.9")]


def test_each_administrators_privileged_change_is_an_alert_of_its_own(
        watched: Runtime) -> None:
    """A second admin's grant in the same window is not hidden behind the first's alert,
    and each alert names its own actor."""
    for admin, account in (("acc_admin1", "acc_target1"), ("acc_admin2", "acc_target2")):
        act(watched, admin, Action.GRANTS_ADD, tenant_id="*", criteria="admin",
            target_type=TargetType.ACCOUNT, target_id=account)
    assert sorted((a.rule, a.principal_id) for a in alerts_of(watched)) == [
        ("configuration-change", "acc_admin1"), ("configuration-change", "acc_admin2")]
    act(watched, "acc_admin1", Action.KILLSWITCH_SET, target_type=TargetType.TENANT,
        target_id="t" * 63)  # the longest tenant id: the subject still fits its column
    assert len(alerts_of(watched)) == 3
    assert all(len(alert.subject) <= 80 for alert in alerts_of(watched))


def test_one_account_locked_again_and_again_is_no_storm_five_accounts_are(
        watched: Runtime) -> None:
    def lock(account: str) -> None:
        act(watched, None, Action.ACCOUNTS_LOCK, target_type=TargetType.ACCOUNT,
            target_id=account, reason=Reason.TOO_MANY_FAILURES, count=5)

    for _ in range(7):
        lock("acc_same")
    lock("acc_other")
    assert ("lockout-storm", "service") not in rules_of(watched)
    for index in range(3):
        lock(f"acc_more{index}")
    assert ("lockout-storm", "service") in rules_of(watched)


def test_a_canary_alert_is_raised_even_when_the_lock_fails(
        watched: Runtime, initialized: bootstrap.InitResult) -> None:
    """The database refuses the disabling (a trigger: as a busy database would): the
    critical alert is there all the same."""
    service = accounts.create_service(watched, system_auditor(watched), admin_of(initialized),
                                      name="nosy reader", grants=[Grant(Role.ANALYST, "acme")])
    with refusing_account_updates(watched):
        act(watched, service.id, Action.CANARIES_TOUCHED, tenant_id="acme", count=1,
            target_type=TargetType.CANARY, target_id="ord_canary")
    assert [(a.rule, a.severity, a.principal_id) for a in alerts_of(watched)] == [
        ("canary-access", "critical", service.id)]
    assert _status(watched, service.id) == "active"  # the lock failed: nothing pretends


@contextmanager
def refusing_account_updates(rt: Runtime) -> Iterator[None]:
    """A real trigger that makes every UPDATE of ``accounts`` fail, while it lasts."""
    with refusing(rt, "UPDATE", "accounts"):
        yield


@contextmanager
def refusing(rt: Runtime, operation: str, table: str) -> Iterator[None]:
    """A real trigger that makes every ``operation`` on ``table`` fail, while it lasts (as a
    database refusing writes would)."""
    postgres = rt.store.engine.dialect.name == "postgresql"
    create = (
        ["CREATE FUNCTION sv_refuse() RETURNS trigger AS $$ BEGIN "
         "RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql",
         f"CREATE TRIGGER sv_refuse BEFORE {operation} ON {table} "
         "FOR EACH ROW EXECUTE FUNCTION sv_refuse()"] if postgres else
        [f"CREATE TRIGGER sv_refuse BEFORE {operation} ON {table} "
         "BEGIN SELECT RAISE(ABORT, 'refused'); END"])
    drop = ([f"DROP TRIGGER sv_refuse ON {table}", "DROP FUNCTION sv_refuse()"] if postgres
            else ["DROP TRIGGER sv_refuse"])
    with rt.store.engine.begin() as connection:
        for statement in create:
            connection.execute(text(statement))
    try:
        yield
    finally:
        with rt.store.engine.begin() as connection:
            for statement in drop:
                connection.execute(text(statement))


def test_failed_password_changes_count_before_a_success(watched: Runtime) -> None:
    """The password change checks the same password and code under the same lockout: five
    guesses there, then a sign-in, is a success after failures; and so is five failed
    sign-ins, then a password changed."""
    act(watched, None, Action.PASSWORD_CHANGE, 5, Outcome.DENIED,
        target_type=TargetType.ACCOUNT, target_id="acc_guessed", status=401,
        reason=Reason.INVALID_CREDENTIALS)
    act(watched, None, Action.SESSION_CREATE, target_type=TargetType.ACCOUNT,
        target_id="acc_guessed")
    act(watched, None, Action.SESSION_CREATE, 5, Outcome.DENIED,
        target_type=TargetType.ACCOUNT, target_id="acc_taken", status=401,
        reason=Reason.INVALID_CREDENTIALS)
    act(watched, None, Action.PASSWORD_CHANGE, target_type=TargetType.ACCOUNT,
        target_id="acc_taken")
    assert sorted(rules_of(watched)) == [("success-after-failures", "acc_guessed"),
                                         ("success-after-failures", "acc_taken")]


def test_a_service_scraping_on_and_on_raises_an_alert_in_every_window(
        watched: Runtime, clock: ManualClock) -> None:
    """A service is not disabled for volume: one new buyer every 10 s for 15 minutes keeps
    over 20 in 5 minutes from the 20th on, and each of the three windows has its alert."""
    next_window(clock)
    for index in range(90):
        reveal(watched, "acc_scraper", range(index, index + 1))
        clock.advance(10)
    assert rules_of(watched) == [("retrieval-volume", "acc_scraper")] * 3


def test_a_failed_job_run_is_an_alert_critical_for_the_logs_own_jobs(watched: Runtime) -> None:
    """A checkpoint job that keeps failing leaves every event written meanwhile without
    tamper evidence: its failure is critical; another job's is high; a run that went well
    raises nothing."""
    auditor = Auditor(watched.audit, SYSTEM_ACTOR)
    for job, outcome in (("audit-checkpoint", Outcome.ERROR), ("canaries-refresh", Outcome.ERROR),
                         ("audit-retention", Outcome.SUCCESS)):
        with watched.store.transaction() as session:
            auditor.record(session, Action.JOBS_RUN, outcome, target_type=TargetType.JOB,
                           target_id=job, reason=Reason.JOB_FAILED
                           if outcome is Outcome.ERROR else None)
    assert watched.audit.subscribers.wait_idle(10)
    assert sorted((a.rule, a.subject, a.severity) for a in alerts_of(watched)) == [
        ("job-failed", "audit-checkpoint", "critical"),
        ("job-failed", "canaries-refresh", "high")]
