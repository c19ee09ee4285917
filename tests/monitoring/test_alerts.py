"""monitoring.alerts: raised once per rule, subject and window (also when two processes
raise it at the same moment), listed newest first a page at a time and filtered (a flood of
newer alerts hides no critical one), and moved forward only: acknowledged, assigned,
closed, each an event; a change that does not apply is a 409 that changes nothing, an
unknown alert a 404. Two officers closing one alert at once: one change. An alert is
assigned only to an active security officer, never to the account it is about, and an
officer disabled while being assigned one is not assigned it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from sellervault import bootstrap
from sellervault.access.actions import Action
from sellervault.access.roles import Grant, Principal, Role
from sellervault.accounts import lifecycle
from sellervault.accounts import service as accounts
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.monitoring import alerts
from sellervault.monitoring.errors import (
    AlertNotFoundError,
    AlertStateError,
    AssigneeIsSubjectError,
    AssigneeNotOfficerError,
    OwnAlertError,
)
from sellervault.runtime import Runtime
from tests.support import account_row_held, admin_of, make_person, system_auditor

WINDOW = "2026-12-05T10:00:00.000000Z"
OFFICER_GRANTS = (Grant(Role.SECURITY_OFFICER, "*"),)


def events(rt: Runtime, action: str) -> list[Any]:
    with rt.store.engine.connect() as connection:
        return list(connection.execute(select(EventRow).where(EventRow.action == action)))


@pytest.fixture
def admin(initialized: bootstrap.InitResult) -> Principal:
    return admin_of(initialized)


def person(rt: Runtime, admin: Principal, name: str,
           grants: tuple[Grant, ...] = OFFICER_GRANTS) -> Principal:
    """A new person, enrolled and active, holding ``grants`` (by default: a security
    officer, which only a person may be)."""
    email = name.lower().replace(" ", ".") + "@example.test"
    created = make_person(rt, admin, email=email, name=name.title(), grants=list(grants))
    return Principal(created.id, "person", grants)


@pytest.fixture
def officer(runtime: Runtime, admin: Principal) -> Principal:
    return person(runtime, admin, "alert desk")


def page_ids(page: alerts.AlertPage) -> list[str]:
    return [alert.id for alert in page.alerts]


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


def test_an_alert_moves_forward_only(runtime: Runtime, officer: Principal) -> None:
    alert_id = alerts.raise_alert(runtime, "login-failures", "medium", "acc_x", "acc_x", WINDOW)
    assert alert_id is not None
    auditor = system_auditor(runtime)
    assigned = alerts.change(runtime, auditor, officer, alert_id, Action.ALERTS_ASSIGN)
    assert (assigned.status, assigned.assigned_to) == ("open", officer.id)
    assert alerts.change(runtime, auditor, officer, alert_id,
                         Action.ALERTS_ACKNOWLEDGE).status == "acknowledged"
    with pytest.raises(AlertStateError):
        alerts.change(runtime, auditor, officer, alert_id, Action.ALERTS_ACKNOWLEDGE)
    assert alerts.change(runtime, auditor, officer, alert_id,
                         Action.ALERTS_CLOSE).status == "closed"
    for action in (Action.ALERTS_CLOSE, Action.ALERTS_ASSIGN, Action.ALERTS_ACKNOWLEDGE):
        with pytest.raises(AlertStateError):
            alerts.change(runtime, auditor, officer, alert_id, action)
    with pytest.raises(AlertNotFoundError):
        alerts.change(runtime, auditor, officer, "alr_" + "0" * 24, Action.ALERTS_CLOSE)
    assert [len(events(runtime, a)) for a in ("alerts:assign", "alerts:acknowledge",
                                              "alerts:close")] == [1, 1, 1]
    closed = alerts.list_alerts(runtime, auditor, alerts.AlertFilter(status="closed"))
    assert (page_ids(closed), closed.next_cursor) == ([alert_id], None)
    assert alerts.list_alerts(runtime, auditor, alerts.AlertFilter(status="open")).alerts == []


def test_an_officer_never_handles_an_alert_about_themselves(
        runtime: Runtime, admin: Principal, officer: Principal) -> None:
    """An officer caught by a canary cannot acknowledge, close or assign away its alert:
    403, nothing changes; another officer can. An assignment's event names the assignee."""
    alert_id = alerts.raise_alert(runtime, "canary-access", "critical", officer.id,
                                  officer.id, WINDOW)
    assert alert_id is not None
    auditor = system_auditor(runtime)
    friend = person(runtime, admin, "friendly desk")
    for action in (Action.ALERTS_CLOSE, Action.ALERTS_ACKNOWLEDGE, Action.ALERTS_ASSIGN):
        with pytest.raises(OwnAlertError):
            alerts.change(runtime, auditor, officer, alert_id, action, assignee=friend.id)
    alert = alerts.get_alert(runtime, alert_id)
    assert (alert.status, alert.assigned_to) == ("open", None)
    other = person(runtime, admin, "other desk")
    lead = person(runtime, admin, "lead desk")
    alerts.change(runtime, auditor, other, alert_id, Action.ALERTS_ASSIGN, assignee=lead.id)
    assert [e.criteria for e in events(runtime, "alerts:assign")] == [lead.id]
    assert alerts.change(runtime, auditor, other, alert_id,
                         Action.ALERTS_CLOSE).status == "closed"


def test_two_officers_closing_one_alert_at_once_make_one_change(runtime: Runtime,
                                                                 officer: Principal) -> None:
    alert_id = alerts.raise_alert(runtime, "login-failures", "medium", "acc_y", "acc_y", WINDOW)
    assert alert_id is not None
    at_once = threading.Barrier(2)

    def close(_: int) -> str:
        at_once.wait()
        try:
            alerts.change(runtime, system_auditor(runtime), officer, alert_id,
                          Action.ALERTS_CLOSE)
        except AlertStateError:
            return "conflict"
        return "closed"

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(close, range(2))) == ["closed", "conflict"]
    assert len(events(runtime, "alerts:close")) == 1


def test_a_flood_of_newer_alerts_hides_no_critical_one(runtime: Runtime,
                                                       clock: ManualClock) -> None:
    """The reported attack: ten denied calls from each of 1,001 addresses raise as many
    alerts, newer than a canary's, and the largest page of the newest holds none of it.
    Filtered by severity or by rule the canary's alert is the one found; paging on from the
    newest reaches it last, every alert listed once."""
    canary = alerts.raise_alert(runtime, "canary-access", "critical", "acc_insider",
                                "acc_insider", WINDOW)
    clock.advance(1)
    flood = {alerts.raise_alert(runtime, "unauthorized-calls", "high",
                                f"address:2001:db8::{i:x}", None, WINDOW) for i in range(1001)}
    auditor = system_auditor(runtime)
    still_open = alerts.AlertFilter(status="open")
    page = alerts.list_alerts(runtime, auditor, still_open, limit=1000)
    assert canary not in page_ids(page)
    for matching in (alerts.AlertFilter(severity="critical"),
                     alerts.AlertFilter(status="open", rule="canary-access")):
        found = alerts.list_alerts(runtime, auditor, matching)
        assert (page_ids(found), found.next_cursor) == ([canary], None)
    listed = page_ids(page)
    while page.next_cursor is not None:
        page = alerts.list_alerts(runtime, auditor, still_open, before=page.next_cursor,
                                  limit=1000)
        listed += page_ids(page)
    assert listed[-1] == canary
    assert len(listed) == len(set(listed)) == len(flood | {canary}) == 1002


def test_paging_lists_every_alert_once_newest_first_whatever_is_raised_meanwhile(
        runtime: Runtime, clock: ManualClock) -> None:
    """Ten alerts, some raised in the same microsecond (ties go by id), read five at a
    time: two pages, the second the last; an alert raised between the pages shifts
    nothing. A cursor that is no alert is a 404."""
    for i in range(10):
        alerts.raise_alert(runtime, "login-failures", "medium", f"acc_{i}", f"acc_{i}", WINDOW)
        if i % 4 == 3:
            clock.advance(1)
    auditor = system_auditor(runtime)
    everything = alerts.list_alerts(runtime, auditor, limit=1000)
    created = [alert.created_at for alert in everything.alerts]
    assert len(created) == 10 and created == sorted(created, reverse=True)
    first = alerts.list_alerts(runtime, auditor, limit=5)
    assert first.next_cursor == first.alerts[-1].id
    clock.advance(1)
    newer = alerts.raise_alert(runtime, "login-failures", "medium", "acc_new", "acc_new",
                               WINDOW)
    second = alerts.list_alerts(runtime, auditor, before=first.next_cursor, limit=5)
    assert second.next_cursor is None
    assert page_ids(first) + page_ids(second) == page_ids(everything)
    assert newer not in page_ids(second)
    with pytest.raises(AlertNotFoundError):
        alerts.list_alerts(runtime, auditor, before="alr_" + "0" * 24)


def test_an_alert_is_never_assigned_to_the_account_it_is_about(
        runtime: Runtime, admin: Principal, officer: Principal) -> None:
    """The reported abuse: officer B assigned the canary's alert about officer A to A
    (who could not close it, but held it). Refused (409 own_alert); the alert is as it
    was, and no assignment is recorded."""
    caught = person(runtime, admin, "caught desk")
    alert_id = alerts.raise_alert(runtime, "canary-access", "critical", caught.id, caught.id,
                                  WINDOW)
    assert alert_id is not None
    with pytest.raises(AssigneeIsSubjectError) as refused:
        alerts.change(runtime, system_auditor(runtime), officer, alert_id,
                      Action.ALERTS_ASSIGN, assignee=caught.id)
    assert (refused.value.status, refused.value.code) == (409, "own_alert")
    alert = alerts.get_alert(runtime, alert_id)
    assert (alert.status, alert.assigned_to) == ("open", None)
    assert events(runtime, "alerts:assign") == []


def test_an_alert_is_assigned_to_no_account_but_an_active_security_officer(
        runtime: Runtime, admin: Principal, officer: Principal, clock: ManualClock) -> None:
    """Refused (422) for an id no account has, an active analyst, a disabled officer, one
    past its end date (before the job disables it) and one still enrolling; nothing
    changes and nothing is recorded. Another active officer is assigned it."""
    alert_id = alerts.raise_alert(runtime, "login-failures", "medium", "acc_x", "acc_x",
                                  WINDOW)
    assert alert_id is not None
    auditor = system_auditor(runtime)
    analyst = person(runtime, admin, "report desk", (Grant(Role.ANALYST, "acme"),))
    disabled = person(runtime, admin, "former desk")
    lifecycle.disable(runtime, auditor, admin, disabled.id)
    ended = person(runtime, admin, "leaving desk")
    lifecycle.set_end_date(runtime, auditor, admin, ended.id, clock.now() + timedelta(hours=1))
    enrolling = accounts.create_person(runtime, auditor, admin, email="new.officer@example.test",
                                       name="New Officer", grants=list(OFFICER_GRANTS))
    clock.advance(2 * 3600)
    for nobody in ("acc_" + "0" * 24, analyst.id, disabled.id, ended.id, enrolling.id):
        with pytest.raises(AssigneeNotOfficerError) as refused:
            alerts.change(runtime, auditor, officer, alert_id, Action.ALERTS_ASSIGN,
                          assignee=nobody)
        assert (refused.value.status, refused.value.code) == (422, "assignee_not_officer")
    alert = alerts.get_alert(runtime, alert_id)
    assert (alert.status, alert.assigned_to) == ("open", None)
    assert events(runtime, "alerts:assign") == []
    colleague = person(runtime, admin, "colleague desk")
    assert alerts.change(runtime, auditor, officer, alert_id, Action.ALERTS_ASSIGN,
                         assignee=colleague.id).assigned_to == colleague.id
    assert [e.criteria for e in events(runtime, "alerts:assign")] == [colleague.id]


@contextmanager
def _account_row_held(rt: Runtime, account_id: str) -> Iterator[Callable[[int], None]]:
    """``account_row_held`` on PostgreSQL (see there)."""
    if rt.store.dialect != "postgresql":
        pytest.skip("row locks and READ COMMITTED races are PostgreSQL's (SQLite serialises "
                    "writers)")
    with account_row_held(rt, account_id) as queued:
        yield queued


def test_an_officer_disabled_while_being_assigned_an_alert_is_not_assigned_it(
        runtime: Runtime, admin: Principal, officer: Principal) -> None:
    """The check-then-write: the assignee's role is read, then the alert written. A disable
    queued first on the assignee's row commits first; the assignment's read waits for it
    (it share-locks the row, where a plain read would see the officer still active and
    assign the alert to a disabled account) and is refused."""
    colleague = person(runtime, admin, "colleague desk")
    alert_id = alerts.raise_alert(runtime, "login-failures", "medium", "acc_z", "acc_z",
                                  WINDOW)
    assert alert_id is not None
    with ThreadPoolExecutor(2) as pool, _account_row_held(runtime, colleague.id) as queued:
        disabling = pool.submit(lifecycle.disable, runtime, system_auditor(runtime), admin,
                                colleague.id)
        queued(1)
        assigning = pool.submit(alerts.change, runtime, system_auditor(runtime), officer,
                                alert_id, Action.ALERTS_ASSIGN, colleague.id)
        queued(2)
    disabling.result()
    with pytest.raises(AssigneeNotOfficerError):
        assigning.result()
    assert alerts.get_alert(runtime, alert_id).assigned_to is None
