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
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel, Outcome, Reason, TargetType
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.counters.redis import RedisCounters
from sellervault.monitoring import detectors
from sellervault.monitoring.models import AlertRow
from sellervault.runtime import Runtime
from tests.support import admin_of, system_auditor


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
