"""The one place SellerVault reads the time.

Every deadline the policy sets (session expiry, TOTP steps, lockout and alert windows, the 24-
and 72-hour clocks, retention and review dates) is measured against the runtime's ``Clock``,
never against the system clock directly (a test greps ``src/`` for other reads). Production
runs the ``SystemClock``; tests run a ``ManualClock`` and move it forward, so a 72-hour
deadline or the next TOTP step is reached in no time and without editing stored timestamps.

Wall time (``now``, ``timestamp``) is what is stored and compared with stored times.
Elapsed time for timeouts on the wire (slow bodies, idle connections) is the event loop's own
monotonic clock and is not the policy's business.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the runtime reads the time from."""

    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...

    def timestamp(self) -> float:
        """The current time as seconds since the Unix epoch."""
        ...


class SystemClock:
    """The operating system's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def timestamp(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to: for tests, and for replaying a scenario.

    It starts at ``start`` (by default the system's time when made, so stored rows look
    ordinary) and stands still until ``advance`` or ``set`` moves it. Thread-safe: a server
    under test reads it from worker threads while the test moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("a ManualClock starts at a timezone-aware time")
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def timestamp(self) -> float:
        return self.now().timestamp()

    def advance(self, by: timedelta | float) -> datetime:
        """Move forward by ``by`` (a timedelta, or seconds); the new time."""
        step = by if isinstance(by, timedelta) else timedelta(seconds=by)
        if step < timedelta(0):
            raise ValueError("a clock does not run backwards")
        with self._lock:
            self._now += step
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (forwards only)."""
        if moment.tzinfo is None:
            raise ValueError("give a timezone-aware time")
        with self._lock:
            if moment < self._now:
                raise ValueError("a clock does not run backwards")
            self._now = moment.astimezone(UTC)


SYSTEM_CLOCK = SystemClock()
