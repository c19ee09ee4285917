"""Alerts: raised once per rule, subject and window by the detectors (``detectors``); listed,
acknowledged, assigned and closed by security officers. Each change is a security event
naming the alert; an alert holds ids and a rule name, never PII.

An alert's status moves forward only: ``open`` → ``acknowledged`` → ``closed`` (an open
alert may be closed at once). Assigning names the security officer working it, without
changing the status: an active account holding ``security-officer`` (asked of the accounts
domain, ``accounts.officers``), never the account the alert is about. Each change is one
conditional UPDATE from the statuses it applies to, so two officers acting at the same
moment cannot both close or both acknowledge it.

Alerts are listed newest first, a page at a time, filtered by status, severity and rule:
a flood of newer alerts (an attacker's denied calls from many addresses) never hides an
older critical one, which ``severity=critical`` finds at once and paging reaches.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, NoReturn, cast

from sqlalchemy import CursorResult, and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from sellervault.access.actions import Action
from sellervault.access.roles import Principal
from sellervault.accounts import officers
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import SYSTEM_ACTOR, Outcome, TargetType
from sellervault.monitoring.errors import (
    AlertNotFoundError,
    AlertStateError,
    AssigneeIsSubjectError,
    AssigneeNotOfficerError,
    OwnAlertError,
)
from sellervault.monitoring.models import AlertRow
from sellervault.notifications import outbox
from sellervault.runtime import Runtime

OPEN, ACKNOWLEDGED, CLOSED = "open", "acknowledged", "closed"
_FROM = {Action.ALERTS_ACKNOWLEDGE: (OPEN,), Action.ALERTS_CLOSE: (OPEN, ACKNOWLEDGED),
         Action.ALERTS_ASSIGN: (OPEN, ACKNOWLEDGED)}
_TO = {Action.ALERTS_ACKNOWLEDGE: ACKNOWLEDGED, Action.ALERTS_CLOSE: CLOSED}


@dataclass(frozen=True, slots=True)
class Alert:
    """``subject`` is what the rule counted or warns of: an account id, ``address:`` and a
    caller's address, ``service``, or a deletion request id (``del_...``)."""

    id: str
    rule: str
    severity: str
    subject: str
    principal_id: str | None
    created_at: str
    status: str
    assigned_to: str | None


def _alert(row: Any) -> Alert:
    return Alert(row.id, row.rule, row.severity, row.subject, row.principal_id, row.created_at,
                 row.status, row.assigned_to)


def raise_alert(rt: Runtime, rule: str, severity: str, subject: str,
                principal_id: str | None, window_start: str) -> str | None:
    """Record an alert of ``rule`` for ``subject`` in the window starting ``window_start``;
    its id, or None when that window has one already (another process raised it). Its
    notifications (one per configured channel, ``notifications.outbox``) are enqueued in the
    same transaction: an alert is never without them, and never has them twice."""
    now = rt.audit.occurred_at()
    alert_id = "alr_" + secrets.token_hex(12)
    values = {"id": alert_id, "rule": rule, "severity": severity, "subject": subject,
              "principal_id": principal_id, "window_start": window_start, "created_at": now,
              "status": OPEN, "assigned_to": None, "updated_at": now}
    with rt.store.transaction() as session:
        dialect = session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        created = session.execute(insert(AlertRow).values(**values).on_conflict_do_nothing(
            index_elements=["rule", "subject", "window_start"]).returning(AlertRow.id)).first()
        if created is None:
            return None
        Auditor(rt.audit, SYSTEM_ACTOR).record(
            session, Action.ALERTS_RAISE, Outcome.SUCCESS, target_type=TargetType.ALERT,
            target_id=alert_id, criteria=rule)
        outbox.enqueue(session, rt.settings, alert_id, rt.clock.now())
    return alert_id


def get_alert(rt: Runtime, alert_id: str) -> Alert:
    """One alert as it stands (``AlertNotFoundError`` if none has that id)."""
    with rt.store.snapshot() as connection:
        row = connection.execute(select(AlertRow.__table__)
                                 .where(AlertRow.id == alert_id)).first()
    if row is None:
        raise AlertNotFoundError()
    return _alert(row)


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which alerts a listing holds: each field given must match (None: any)."""

    status: str | None = None
    severity: str | None = None
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class AlertPage:
    """A page of alerts, newest first; ``next_cursor`` is the ``before`` of the next page
    (the last alert's id), None when this page is the last."""

    alerts: list[Alert]
    next_cursor: str | None


def _older_than(session: Session, before: str) -> ColumnElement[bool]:
    """The alerts listed after alert ``before`` (newest first, ties by id): a position, so
    the alerts raised while an officer pages shift nothing (``AlertNotFoundError`` if no
    alert has that id)."""
    created_at = session.scalar(select(AlertRow.created_at).where(AlertRow.id == before))
    if created_at is None:
        raise AlertNotFoundError()
    return or_(AlertRow.created_at < created_at,
               and_(AlertRow.created_at == created_at, AlertRow.id > before))


def list_alerts(rt: Runtime, auditor: Auditor, matching: AlertFilter | None = None,
                before: str | None = None, limit: int = 100) -> AlertPage:
    """The newest alerts first matching ``matching``, after alert ``before`` if given."""
    matching = matching or AlertFilter()
    query = select(AlertRow).order_by(AlertRow.created_at.desc(), AlertRow.id).limit(limit + 1)
    for column, wanted in ((AlertRow.status, matching.status),
                           (AlertRow.severity, matching.severity),
                           (AlertRow.rule, matching.rule)):
        if wanted is not None:
            query = query.where(column == wanted)
    with rt.store.transaction() as session:
        if before is not None:
            query = query.where(_older_than(session, before))
        found = [_alert(row) for row in session.scalars(query)]
        page = found[:limit]
        auditor.record(session, Action.ALERTS_LIST, Outcome.SUCCESS,
                       target_type=TargetType.ALERT, count=len(page))
    return AlertPage(page, page[-1].id if len(found) > limit else None)


def change(rt: Runtime, auditor: Auditor, officer: Principal, alert_id: str, action: Action,
           assignee: str | None = None) -> Alert:
    """Acknowledge, close or assign (to ``assignee``, else the officer) one alert; the alert
    as it is now. An alert about the officer themselves is another officer's (403), and is
    never assigned to the account it is about (409): both conditions are part of the update,
    so nothing changes the alert's subject in between. The assignee must be an active
    security officer (422), asked in the same transaction, which holds that answer until it
    ends (``officers.is_active_officer``). The assignment's event names the assignee."""
    values: dict[str, Any] = {"updated_at": rt.audit.occurred_at()}
    conditions = [AlertRow.id == alert_id, AlertRow.status.in_(_FROM[action]),
                  AlertRow.principal_id.is_distinct_from(officer.id)]
    assigned_to = None
    if action is Action.ALERTS_ASSIGN:
        assigned_to = values["assigned_to"] = assignee or officer.id
        conditions.append(AlertRow.principal_id.is_distinct_from(assigned_to))
    else:
        values["status"] = _TO[action]
    with rt.store.transaction() as session:
        if assigned_to is not None and not officers.is_active_officer(session, assigned_to,
                                                                      rt.clock.now()):
            raise AssigneeNotOfficerError()
        changed = cast(CursorResult[Any], session.execute(
            update(AlertRow).where(*conditions)
            .values(**values).execution_options(synchronize_session=False)))
        if changed.rowcount != 1:
            _refuse(session, alert_id, officer, assigned_to)
        auditor.record(session, action, Outcome.SUCCESS, target_type=TargetType.ALERT,
                       target_id=alert_id, criteria=assigned_to)
        row = session.get_one(AlertRow, alert_id)
        session.refresh(row)
        return _alert(row)


def _refuse(session: Session, alert_id: str, officer: Principal,
            assignee: str | None) -> NoReturn:
    """Why a change did not apply to the alert (read after the update, which decided)."""
    found = session.get(AlertRow, alert_id)
    if found is None:
        raise AlertNotFoundError()
    if found.principal_id == officer.id:
        raise OwnAlertError()
    if assignee is not None and found.principal_id == assignee:
        raise AssigneeIsSubjectError()
    raise AlertStateError()
