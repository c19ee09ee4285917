"""Access tables: budgets, one row per principal and budget."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from sellervault.store.base import Base


class BudgetRow(Base):
    """How much of a budget a principal has used in its current window (``access.budgets``)."""

    __tablename__ = "access_budgets"

    principal_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    budget: Mapped[str] = mapped_column(String(32), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger)
    """Unix seconds at which the current window began."""
    used: Mapped[int] = mapped_column(Integer)
