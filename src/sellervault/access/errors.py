"""Access errors. Messages are fixed: they name the limit, never the request."""

from __future__ import annotations


class AccessError(Exception):
    code = "access_error"
    status = 403


class BudgetExhaustedError(AccessError):
    """The principal has used its budget for this window; ``retry_after`` is in seconds."""

    code = "budget_exhausted"
    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many of these requests in this period; try again later")
        self.retry_after = retry_after
