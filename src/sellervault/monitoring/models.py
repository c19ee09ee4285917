"""Alert tables. An alert holds ids, a rule name and a window: never PII."""

from __future__ import annotations

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sellervault.store.base import Base

SUBJECT_LENGTH = 80
"""The longest subject an alert holds (``detectors.fitting`` keeps every subject to it)."""


class AlertRow(Base):
    """One alert: a rule that fired for a subject (an account id, or an address when no
    account was identified) in one window. The unique key is what makes an alert fire once
    per window, whichever server process counted the event that crossed the threshold."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("rule", "subject", "window_start",
                                       name="uq_alerts_rule_subject_window"),
                      # (the listing's order and cursor: migration 0030)
                      Index("ix_alerts_created_at_id", "created_at", "id"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    rule: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(SUBJECT_LENGTH))
    principal_id: Mapped[str | None] = mapped_column(String(32))
    window_start: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    assigned_to: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[str] = mapped_column(String(32))
