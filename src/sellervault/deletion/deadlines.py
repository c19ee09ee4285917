"""The deadline clock of deletion requests: the ``deletion-deadlines`` job warns as a request
that is not done nears its deadline, and raises the alarm when it passes. Through the
monitoring pipeline (``monitoring.alerts``): each warning is an alert, notified by webhook
and e-mail like any other, once per request and stage (the alert's unique key, and the
request's ``warned`` stage, moved on by a conditional update).

Stages: 24 hours left (``deletion-deadline``, medium), 8 hours (high), 1 hour (high), and
overdue (``deletion-overdue``, critical). A request filed late enters at the stage its time
left is in (no burst of the earlier warnings)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import SYSTEM_ACTOR, Outcome, TargetType
from sellervault.audit.log import event_time
from sellervault.deletion.models import DeletionRequest
from sellervault.deletion.requests import EXECUTING, PENDING
from sellervault.monitoring import alerts
from sellervault.runtime import Runtime

DEADLINE_RULE, OVERDUE_RULE = "deletion-deadline", "deletion-overdue"


@dataclass(frozen=True)
class Stage:
    number: int
    left: timedelta
    """The stage begins when this much time is left (overdue: none)."""
    rule: str
    severity: str


STAGES = (Stage(1, timedelta(hours=24), DEADLINE_RULE, "medium"),
          Stage(2, timedelta(hours=8), DEADLINE_RULE, "high"),
          Stage(3, timedelta(hours=1), DEADLINE_RULE, "high"),
          Stage(4, timedelta(0), OVERDUE_RULE, "critical"))


def stage_at(deadline: datetime, now: datetime) -> Stage | None:
    """The stage a request due at ``deadline`` is in at ``now`` (None: more than 24 hours
    left)."""
    current = None
    for stage in STAGES:
        if deadline - now <= stage.left:
            current = stage
    return current


def warn(rt: Runtime) -> int:
    """The ``deletion-deadlines`` job: the alerts raised now."""
    now = rt.clock.now()
    with rt.store.transaction() as session:
        due = session.execute(select(DeletionRequest.id, DeletionRequest.tenant_id,
                                     DeletionRequest.deadline, DeletionRequest.warned).where(
            DeletionRequest.status.in_([PENDING, EXECUTING]),
            DeletionRequest.deadline <= now + STAGES[0].left,
            DeletionRequest.warned < len(STAGES))).all()
    raised = 0
    for request_id, tenant_id, deadline, warned in due:
        stage = stage_at(deadline, now)
        if stage is None or stage.number <= warned:
            continue
        # The window is the moment the stage began: one alert per request and stage.
        alert = alerts.raise_alert(rt, stage.rule, stage.severity, request_id, None,
                                   event_time(deadline - stage.left))
        raised += alert is not None
        with rt.store.transaction() as session:
            moved = session.execute(update(DeletionRequest).where(
                DeletionRequest.id == request_id, DeletionRequest.warned < stage.number,
            ).values(warned=stage.number))
            if moved.rowcount == 1:  # type: ignore[attr-defined]
                hours_left = max(0, int((deadline - now).total_seconds() // 3600))
                Auditor(rt.audit, SYSTEM_ACTOR).record(
                    session, Action.DELETIONS_DUE, Outcome.SUCCESS, tenant_id=tenant_id,
                    target_type=TargetType.DELETION_REQUEST, target_id=request_id,
                    criteria=stage.rule, count=hours_left)
    return raised
