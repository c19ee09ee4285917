"""access.killswitches: an operator stops every PII reveal, one tenant or one account; on
SQLite and PostgreSQL.

- Each switch stops exactly what it names: reveals and searches (not masked reads) on every
  tenant; every action on one tenant; every action of one account. Cleared, all runs again.
- Set and clear are one event each, naming the operator's action and the switch; setting a
  set switch (409) or clearing an unset one (404) changes nothing; a malformed subject is
  refused (422).
- Another process sees a switch within ``CACHE_SECONDS`` of its clock; the process that set
  it at once.
- Two operators setting one switch at the same moment: one change, one event.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select

from sellervault import bootstrap
from sellervault.access import killswitches
from sellervault.access.actions import Action
from sellervault.access.errors import KillSwitchError, SwitchRequestError, SwitchStateError
from sellervault.access.killswitches import CACHE_SECONDS, Scope, SwitchBoard
from sellervault.access.roles import Grant, Principal, Role
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.runtime import Runtime
from tests.support import system_auditor

OPERATOR = Principal("acc_" + "0" * 24, "person", (Grant(Role.OPERATOR, "*"),))
READER = Principal("svc_" + "1" * 24, "service", (Grant(Role.PII_READER, "acme"),))
OTHER = Principal("svc_" + "2" * 24, "service", (Grant(Role.PII_READER, "acme"),))


def stopped(rt: Runtime, principal: Principal, action: Action, tenant: str | None,
            board: SwitchBoard | None = None) -> bool:
    async def check() -> None:
        await (board or rt.switches).check(rt, principal, action, tenant)
    try:
        rt.store.call(check)
    except KillSwitchError:
        return True
    return False


def events(rt: Runtime, action: str) -> list[Any]:
    with rt.store.engine.connect() as connection:
        return list(connection.execute(select(EventRow).where(EventRow.action == action)))


def test_the_reveals_switch_stops_reveals_and_searches_everywhere_and_nothing_else(
        runtime: Runtime) -> None:
    killswitches.set_switch(runtime, system_auditor(runtime), OPERATOR, Scope.REVEALS, None)
    for tenant in ("acme", "globex"):
        assert stopped(runtime, READER, Action.ORDERS_REVEAL, tenant)
        assert stopped(runtime, READER, Action.ORDERS_SEARCH, tenant)
        assert not stopped(runtime, READER, Action.ORDERS_READ, tenant)
    killswitches.clear_switch(runtime, system_auditor(runtime), Scope.REVEALS, None)
    assert not stopped(runtime, READER, Action.ORDERS_REVEAL, "acme")
    [set_event] = events(runtime, "killswitch:set")
    [clear_event] = events(runtime, "killswitch:clear")
    for event in (set_event, clear_event):
        assert (event.target_type, event.target_id, event.outcome) == (
            "pii-reveals", "*", "success")


def test_a_tenant_switch_stops_every_action_on_that_tenant_only(runtime: Runtime) -> None:
    killswitches.set_switch(runtime, system_auditor(runtime), OPERATOR, Scope.TENANT, "acme")
    for action in (Action.ORDERS_INGEST, Action.ORDERS_READ, Action.ORDERS_REVEAL,
                   Action.CANARIES_LIST):
        assert stopped(runtime, READER, action, "acme")
        assert not stopped(runtime, READER, action, "globex")
    assert not stopped(runtime, READER, Action.SESSION_READ, None)


def test_an_account_switch_stops_everything_that_account_does(runtime: Runtime) -> None:
    killswitches.set_switch(runtime, system_auditor(runtime), OPERATOR, Scope.ACCOUNT,
                            READER.id)
    for action, tenant in ((Action.SESSION_READ, None), (Action.ORDERS_READ, "acme"),
                           (Action.ORDERS_REVEAL, "globex")):
        assert stopped(runtime, READER, action, tenant)
        assert not stopped(runtime, OTHER, action, tenant)
    [event] = events(runtime, "killswitch:set")
    assert (event.target_type, event.target_id) == ("account", READER.id)


def test_changes_that_do_not_apply_change_nothing(runtime: Runtime) -> None:
    auditor = system_auditor(runtime)
    killswitches.set_switch(runtime, auditor, OPERATOR, Scope.TENANT, "acme")
    with pytest.raises(SwitchStateError) as again:
        killswitches.set_switch(runtime, auditor, OPERATOR, Scope.TENANT, "acme")
    assert again.value.status == 409
    with pytest.raises(SwitchStateError) as unset:
        killswitches.clear_switch(runtime, auditor, Scope.TENANT, "globex")
    assert unset.value.status == 404
    for scope, subject in ((Scope.TENANT, None), (Scope.TENANT, "Not A Tenant"),
                           (Scope.ACCOUNT, "acme"), (Scope.ACCOUNT, None),
                           (Scope.REVEALS, "acme")):
        with pytest.raises(SwitchRequestError):
            killswitches.set_switch(runtime, auditor, OPERATOR, scope, subject)
    assert len(events(runtime, "killswitch:set")) == 1
    assert events(runtime, "killswitch:clear") == []


def test_another_process_sees_a_switch_within_its_cache_time(
        runtime: Runtime, clock: ManualClock) -> None:
    other_process = SwitchBoard()
    assert not stopped(runtime, READER, Action.ORDERS_REVEAL, "acme", other_process)
    killswitches.set_switch(runtime, system_auditor(runtime), OPERATOR, Scope.REVEALS, None)
    assert stopped(runtime, READER, Action.ORDERS_REVEAL, "acme")  # this process: at once
    assert not stopped(runtime, READER, Action.ORDERS_REVEAL, "acme", other_process)
    clock.advance(CACHE_SECONDS)
    assert stopped(runtime, READER, Action.ORDERS_REVEAL, "acme", other_process)
    assert CACHE_SECONDS <= 1.0  # the policy's bound


def test_two_operators_setting_one_switch_at_once_make_one_change(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    operators = [OPERATOR, Principal("acc_" + "3" * 24, "person", (Grant(Role.OPERATOR, "*"),))]
    at_once = threading.Barrier(len(operators))

    def attempt(operator: Principal) -> str:
        at_once.wait()
        try:
            killswitches.set_switch(runtime, system_auditor(runtime), operator, Scope.TENANT,
                                    "acme")
        except SwitchStateError:
            return "conflict"
        return "set"

    with ThreadPoolExecutor(len(operators)) as pool:
        assert sorted(pool.map(attempt, operators)) == ["conflict", "set"]
    assert len(events(runtime, "killswitch:set")) == 1
