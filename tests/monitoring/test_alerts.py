"""monitoring.alerts: raised once per rule, subject and window (also when two processes
raise it at the same moment), listed newest first, and moved forward only: acknowledged,
assigned, closed, each an event; a change that does not apply is a 409 that changes
nothing, an unknown alert a 404. Two officers closing one alert at once: one change."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select

from sellervault.access.actions import Action
from sellervault.access.roles import Grant, Principal, Role
from sellervault.audit.models import EventRow
from sellervault.monitoring import alerts
from sellervault.monitoring.errors import AlertNotFoundError, AlertStateError, OwnAlertError
from sellervault.runtime import Runtime
from tests.support import system_auditor

OFFICER = Principal("acc_officer", "person", (Grant(Role.SECURITY_OFFICER, "*"),))
WINDOW = "2026-12-05T10:00:00.000000Z"


def events(rt: Runtime, action: str) -> list[Any]:
    with rt.store.engine.connect() as connection:
        return list(connection.execute(select(EventRow).where(EventRow.action == action)))


def test_an_alert_is_raised_once_per_window_even_from_two_processes_at_once(
        runtime: Runtime) -> None:
    at_once = threading.Barrier(4)

    def raise_it(_: int) -> str | None:
        at_once.wait()
        return alerts.raise_alert(runtime, "unauthorized-calls", "high", "acc_m", "acc_m",
                                  WINDOW)

    with ThreadPoolExecutor(4) as pool:
        raised = [r for r in pool.map(raise_it, range(4)) if r is not None]
    assert len(raised) == 1
    assert len(events(runtime, "alerts:raise")) == 1
    assert alerts.raise_alert(runtime, "unauthorized-calls", "high", "acc_m", "acc_m",
                              "2026-12-05T10:05:00.000000Z") is not None


def test_an_alert_moves_forward_only(runtime: Runtime) -> None:
    alert_id = alerts.raise_alert(runtime, "login-failures", "medium", "acc_x", "acc_x", WINDOW)
    assert alert_id is not None
    auditor = system_auditor(runtime)
    assigned = alerts.change(runtime, auditor, OFFICER, alert_id, Action.ALERTS_ASSIGN)
    assert (assigned.status, assigned.assigned_to) == ("open", "acc_officer")
    assert alerts.change(runtime, auditor, OFFICER, alert_id,
                         Action.ALERTS_ACKNOWLEDGE).status == "acknowledged"
    with pytest.raises(AlertStateError):
        alerts.change(runtime, auditor, OFFICER, alert_id, Action.ALERTS_ACKNOWLEDGE)
    assert alerts.change(runtime, auditor, OFFICER, alert_id,
                         Action.ALERTS_CLOSE).status == "closed"
    for action in (Action.ALERTS_CLOSE, Action.ALERTS_ASSIGN, Action.ALERTS_ACKNOWLEDGE):
        with pytest.raises(AlertStateError):
            alerts.change(runtime, auditor, OFFICER, alert_id, action)
    with pytest.raises(AlertNotFoundError):
        alerts.change(runtime, auditor, OFFICER, "alr_" + "0" * 24, Action.ALERTS_CLOSE)
    assert [len(events(runtime, a)) for a in ("alerts:assign", "alerts:acknowledge",
                                              "alerts:close")] == [1, 1, 1]
    [listed] = alerts.list_alerts(runtime, auditor, "closed")
    assert listed.id == alert_id
    assert alerts.list_alerts(runtime, auditor, "open") == []


def test_an_officer_never_handles_an_alert_about_themselves(runtime: Runtime) -> None:
    """An officer caught by a canary cannot acknowledge, close or assign away its alert:
    403, nothing changes; another officer can. An assignment's event names the assignee."""
    alert_id = alerts.raise_alert(runtime, "canary-access", "critical", "acc_officer",
                                  "acc_officer", WINDOW)
    assert alert_id is not None
    auditor = system_auditor(runtime)
    for action in (Action.ALERTS_CLOSE, Action.ALERTS_ACKNOWLEDGE, Action.ALERTS_ASSIGN):
        with pytest.raises(OwnAlertError):
            alerts.change(runtime, auditor, OFFICER, alert_id, action, assignee="acc_friend")
    [alert] = alerts.list_alerts(runtime, auditor)
    assert (alert.status, alert.assigned_to) == ("open", None)
    other = Principal("acc_other", "person", (Grant(Role.SECURITY_OFFICER, "*"),))
    alerts.change(runtime, auditor, other, alert_id, Action.ALERTS_ASSIGN, assignee="acc_lead")
    assert [e.criteria for e in events(runtime, "alerts:assign")] == ["acc_lead"]
    assert alerts.change(runtime, auditor, other, alert_id,
                         Action.ALERTS_CLOSE).status == "closed"


def test_two_officers_closing_one_alert_at_once_make_one_change(runtime: Runtime) -> None:
    alert_id = alerts.raise_alert(runtime, "login-failures", "medium", "acc_y", "acc_y", WINDOW)
    assert alert_id is not None
    at_once = threading.Barrier(2)

    def close(_: int) -> str:
        at_once.wait()
        try:
            alerts.change(runtime, system_auditor(runtime), OFFICER, alert_id,
                          Action.ALERTS_CLOSE)
        except AlertStateError:
            return "conflict"
        return "closed"

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(close, range(2))) == ["closed", "conflict"]
    assert len(events(runtime, "alerts:close")) == 1
