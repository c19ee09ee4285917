"""Access errors. Messages are fixed: they name the limit, never the request."""

from __future__ import annotations

from sellervault.audit.events import Reason


class AccessError(Exception):
    code = Reason.ACCESS_ERROR
    status = 403


class BudgetExhaustedError(AccessError):
    """The principal has used its budget for this window; ``retry_after`` is in seconds."""

    code = Reason.BUDGET_EXHAUSTED
    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many of these requests in this period; try again later")
        self.retry_after = retry_after


class PurposeNotPermittedError(AccessError):
    """A PII operation without a purpose of the vocabulary (``access.decisions``)."""

    code = Reason.PURPOSE_NOT_PERMITTED
    status = 403

    def __init__(self) -> None:
        super().__init__("PII may only be revealed for a permitted purpose")


class KillSwitchError(AccessError):
    """An operator's kill switch stops this request (``access.killswitches``)."""

    code = Reason.KILL_SWITCH
    status = 403

    def __init__(self) -> None:
        super().__init__("stopped by a kill switch; an operator can say when it is cleared")


class SwitchRequestError(AccessError):
    code = Reason.INVALID_SWITCH
    status = 422


class SwitchStateError(AccessError):
    """A switch set already (409), or not set (404)."""

    code = Reason.SWITCH_STATE

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status
