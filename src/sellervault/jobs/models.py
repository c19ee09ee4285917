"""The jobs' table: where each periodic job stands, shared by every process on the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from sellervault.store.base import Base
from sellervault.store.types import UTCDateTime


class JobRunRow(Base):
    """One row per job (``jobs.runner``): the next run's due time, which is claimed by moving
    it forward, the run in progress, and how the last run ended."""

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    run_id: Mapped[str | None] = mapped_column(String(32))
    """The claim of the run in progress (or of the last run): its finish is written only by
    the runner holding it."""
    running_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_outcome: Mapped[str | None] = mapped_column(String(16))
    last_count: Mapped[int | None] = mapped_column(BigInteger)
