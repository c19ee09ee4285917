"""Alerts (role ``security-officer``): what the detectors raised (``monitoring``), and the
outbox of their notifications, dead letters retried (``notifications.dead_letters``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from sellervault.access.actions import Action
from sellervault.monitoring import alerts
from sellervault.notifications import dead_letters
from sellervault.web.context import RequestState, api_router, require
from sellervault.web.openapi import own_errors

router = api_router("alerts")

ALERT_ID = Path(max_length=32, pattern=r"^alr_[0-9a-f]{24}$")


class AlertOut(BaseModel):
    """An alert as ``monitoring.alerts.Alert`` holds it, field for field."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    rule: str
    severity: str
    subject: str = Field(description="what the rule counted or warns of: an account id, "
                         "'address:' and a caller's address, 'service', or a deletion "
                         "request id")
    principal_id: str | None
    created_at: str
    status: str
    assigned_to: str | None


class AlertPageOut(BaseModel):
    alerts: list[AlertOut]
    next_cursor: str | None = Field(description="the `before` of the next page; null: this "
                                    "was the last")


@router.get("/alerts", response_model=AlertPageOut, responses=own_errors(404))
def list_alerts(
    state: Annotated[RequestState, Depends(require(Action.ALERTS_LIST))],
    status: Annotated[Literal["open", "acknowledged", "closed"] | None, Query()] = None,
    severity: Annotated[Literal["low", "medium", "high", "critical"] | None, Query()] = None,
    rule: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z][a-z0-9-]*$")] = None,
    before: Annotated[str | None, Query(max_length=32, pattern=r"^alr_[0-9a-f]{24}$",
                                        description="the cursor: alerts listed after this "
                                                    "one (a page's next_cursor)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlertPageOut:
    """The newest alerts first, matching every filter given, a page at a time: ids, the
    rule, its subject (an account, an address, a deletion request), the account (or none),
    never PII. Page on with ``before=next_cursor`` until it is null, so that no flood of
    newer alerts hides an older one; 404 for a cursor that is no alert."""
    page = alerts.list_alerts(state.runtime, state.auditor,
                              alerts.AlertFilter(status, severity, rule), before, limit)
    return AlertPageOut(alerts=[AlertOut.model_validate(alert) for alert in page.alerts],
                        next_cursor=page.next_cursor)


def _change(state: RequestState, alert_id: str, action: Action,
            assignee: str | None = None) -> AlertOut:
    return AlertOut.model_validate(alerts.change(state.runtime, state.auditor,
                                                 state.principal, alert_id, action, assignee))


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertOut,
             responses=own_errors(404, 409, 422))
def acknowledge_alert(
    alert_id: Annotated[str, ALERT_ID],
    state: Annotated[RequestState, Depends(require(Action.ALERTS_ACKNOWLEDGE))],
) -> AlertOut:
    """Someone is looking at it (open only)."""
    return _change(state, alert_id, Action.ALERTS_ACKNOWLEDGE)


@router.post("/alerts/{alert_id}/close", response_model=AlertOut,
             responses=own_errors(404, 409, 422))
def close_alert(
    alert_id: Annotated[str, ALERT_ID],
    state: Annotated[RequestState, Depends(require(Action.ALERTS_CLOSE))],
) -> AlertOut:
    """Dealt with (open or acknowledged)."""
    return _change(state, alert_id, Action.ALERTS_CLOSE)


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee: str | None = Field(default=None, max_length=32,
                                 pattern=r"^(acc|svc)_[0-9a-f]{24}$",
                                 description="an active security officer's account id, "
                                             "not the alert's own account; none: yourself")


@router.post("/alerts/{alert_id}/assign", response_model=AlertOut,
             responses=own_errors(404, 409, 422))
def assign_alert(
    alert_id: Annotated[str, ALERT_ID],
    body: AssignIn,
    state: Annotated[RequestState, Depends(require(Action.ALERTS_ASSIGN))],
) -> AlertOut:
    """Who works on it (an open or acknowledged alert): an active security officer (else
    422 ``assignee_not_officer``), never the account the alert is about (409 ``own_alert``)."""
    return _change(state, alert_id, Action.ALERTS_ASSIGN, body.assignee)


NOTIFICATION_ID = Path(max_length=32, pattern=r"^ntf_[0-9a-f]{24}$")


class NotificationOut(BaseModel):
    """A notification as the outbox holds it (``dead_letters.Letter``, field for field)."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    alert_id: str
    channel: str
    status: str
    attempts: int
    last_reason: str | None
    last_code: int | None
    created_at: datetime
    next_attempt_at: datetime
    finished_at: datetime | None


@router.get("/alerts/notifications")
def list_notifications(
    state: Annotated[RequestState, Depends(require(Action.NOTIFICATIONS_LIST))],
    status: Annotated[Literal["dead", "pending", "delivered"], Query()] = "dead",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[NotificationOut]]:
    """Alert notifications by status, newest first (by default the dead letters: sent to
    nobody after the last attempt). Ids, channel, counts, reason codes, times."""
    found = dead_letters.list_notifications(state.runtime, state.auditor, status, limit)
    return {"notifications": [NotificationOut.model_validate(letter) for letter in found]}


@router.post("/alerts/notifications/{notification_id}/retry", response_model=NotificationOut,
             responses=own_errors(404, 409, 422))
def retry_notification(
    notification_id: Annotated[str, NOTIFICATION_ID],
    state: Annotated[RequestState, Depends(require(Action.NOTIFICATIONS_RETRY))],
) -> NotificationOut:
    """Send a dead letter again (due now, its attempts afresh); 409 if it is not dead."""
    return NotificationOut.model_validate(dead_letters.retry(state.runtime, state.auditor,
                                                             notification_id))
