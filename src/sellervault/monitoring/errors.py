"""What the alerts API answers when a change does not apply."""

from __future__ import annotations

from sellervault.audit.events import Reason


class MonitoringError(Exception):
    code = Reason.NOT_FOUND
    status = 400


class AlertNotFoundError(MonitoringError):
    code = Reason.NOT_FOUND
    status = 404

    def __init__(self) -> None:
        super().__init__("no such alert")


class AlertStateError(MonitoringError):
    code = Reason.ALERT_STATE
    status = 409

    def __init__(self) -> None:
        super().__init__("the alert is not in a state this change applies to (closed?)")


class OwnAlertError(MonitoringError):
    """The alert is about the officer who would handle it: another officer does (nobody
    acknowledges, closes or assigns away the alert a canary raised about them)."""

    code = Reason.OWN_ALERT
    status = 403

    def __init__(self) -> None:
        super().__init__("an alert about you is handled by another security officer")


class AssigneeIsSubjectError(MonitoringError):
    """The alert would go to the account it is about: whoever a canary caught does not
    work their own alert (nor, with it assigned to them, keep other officers off it)."""

    code = Reason.OWN_ALERT
    status = 409

    def __init__(self) -> None:
        super().__init__("an alert is never assigned to the account it is about")


class AssigneeNotOfficerError(MonitoringError):
    """The assignee is no account that works alerts now (none by that id, disabled, past
    its end date, or without ``security-officer``): an alert assigned to nobody who can
    act on it is one nobody works."""

    code = Reason.ASSIGNEE_NOT_OFFICER
    status = 422

    def __init__(self) -> None:
        super().__init__("the assignee is not an active security officer")
