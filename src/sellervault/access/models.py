"""Access tables: budgets (one row per principal and budget) and kill switches."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from sellervault.store.base import Base
from sellervault.store.types import UTCDateTime


class BudgetRow(Base):
    """How much of a budget a principal has used in its current window (``access.budgets``)."""

    __tablename__ = "access_budgets"

    principal_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    budget: Mapped[str] = mapped_column(String(32), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger)
    """Unix seconds at which the current window began."""
    used: Mapped[int] = mapped_column(Integer)


class KillSwitchRow(Base):
    """A kill switch set (``access.killswitches``): deleted when cleared."""

    __tablename__ = "kill_switches"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    set_by: Mapped[str | None] = mapped_column(String(32))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)
