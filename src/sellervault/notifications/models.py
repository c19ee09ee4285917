"""The outbox of alert notifications: one row per alert and configured channel, written in the
alert's own transaction, delivered by the ``alert-notifications`` job. A row holds ids, a
channel, times and the last failure's reason code: never PII, never a message body."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sellervault.store.base import Base
from sellervault.store.types import UTCDateTime


class NotificationRow(Base):
    """One alert's notification on one channel. ``pending`` until delivered (``delivered``)
    or given up after the last attempt (``dead``: the dead letter list). The unique key is
    what makes an alert enqueued once per channel; ``claim_id`` and ``claimed_until`` are the
    lease of the deliverer sending it now (``outbox.claim``)."""

    __tablename__ = "alert_notifications"
    __table_args__ = (
        UniqueConstraint("alert_id", "channel", name="uq_alert_notifications_alert_channel"),
        Index("ix_alert_notifications_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(32), ForeignKey("alerts.id"))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claim_id: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When it was delivered or given up."""
    last_reason: Mapped[str | None] = mapped_column(String(32))
    """The last failed attempt's reason code (``audit.events.Reason``)."""
    last_status: Mapped[int | None] = mapped_column(Integer)
    """The last failed attempt's HTTP status or SMTP reply code, when the other side answered."""
