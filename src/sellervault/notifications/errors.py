"""Why a delivery attempt failed: a reason code of the one vocabulary (``Reason``) and, when
the other side answered, its HTTP status or SMTP reply code. Never the answer's text, the
URL, an address or a secret: these go into security events and log lines."""

from __future__ import annotations

from sellervault.audit.events import Reason


class DeliveryError(Exception):
    """One attempt failed; the outbox retries it later, or gives it up after the last."""

    def __init__(self, reason: Reason, status: int | None = None) -> None:
        super().__init__(f"delivery failed: {reason.value}"
                         + ("" if status is None else f" ({status})"))
        self.reason = reason
        self.status = status


class NotificationNotFoundError(LookupError):
    """No notification has that id."""
