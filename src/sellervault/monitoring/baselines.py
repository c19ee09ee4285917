"""A principal's usual level of something per period (requests a minute, buyers revealed in
five minutes): an exponentially weighted moving average and variance, kept in the shared
counters so that every server process reads and moves the same one.

Each period's count is a counter of its own (the subject and the period's number), counted
exactly by every process. When a process sees the first event of a new period, it folds the
periods since the last fold into the baseline: the last one's count, then a zero for each
idle period between (a principal idle for an hour has a baseline near zero again).

The baseline is advisory: two processes folding the same period at the same moment may
both fold it (the flag is read, then written), which moves the average a little more than
once. The counts the thresholds are compared with are exact; only the "usual" they are
compared against can be off by that much.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import timedelta

from sellervault.counters.interface import Counters, Flag, Window

ALPHA = 0.1
"""The weight of the newest period: about the last twenty periods count."""
WARM_UP = 30
"""Periods folded before the baseline is believed: none of its alerts before that."""
SIGMAS = 3
LEVEL_KEPT = timedelta(days=30)
"""A principal unseen this long starts a new baseline (and warms up again)."""
MAX_IDLE_FOLDS = 200
"""Zeros folded for a long idleness at most: past it, the average is zero to the digits."""


@dataclass(slots=True)
class Level:
    """The baseline as stored: where it has folded up to, and what it learned."""

    period: int
    """The period the baseline is in now (its count is not folded yet)."""
    mean: float = 0.0
    variance: float = 0.0
    folded: int = 0

    def fold(self, value: float) -> None:
        """One period's count into the average and variance (West's incremental EWMA)."""
        difference = value - self.mean
        increment = ALPHA * difference
        self.mean += increment
        self.variance = (1 - ALPHA) * (self.variance + difference * increment)
        self.folded += 1

    def limit(self, floor: float) -> float | None:
        """Above this a period is unusual: the mean plus three standard deviations, never
        under ``floor``; None while warming up."""
        if self.folded < WARM_UP:
            return None
        return max(floor, self.mean + SIGMAS * math.sqrt(self.variance))


@dataclass(frozen=True, slots=True)
class Baseline:
    """One kind of baseline: its period, its per-period counter and its stored level."""

    name: str
    period: timedelta
    cap: int

    @property
    def counts(self) -> Window:
        """Each period's count, kept an hour (what a fold reads back)."""
        return Window(f"{self.name}-period", max(timedelta(hours=1), 2 * self.period),
                      cap=self.cap)

    @property
    def level(self) -> Flag:
        return Flag(f"{self.name}-level")

    def period_of(self, timestamp: float) -> int:
        return int(timestamp // self.period.total_seconds())

    def current(self, counters: Counters, subject: str, period: int) -> Level:
        """The level of ``subject`` as of the start of ``period``, folding (and storing)
        the periods finished since the last fold."""
        stored = counters.flag(self.level, subject)
        if stored is None:  # a principal seen for the first time (or after 30 days)
            level = Level(period)
        else:
            fields = json.loads(stored)
            level = Level(fields["p"], fields["m"], fields["v"], fields["n"])
            if level.period >= period:
                return level
            level.fold(counters.count(self.counts, f"{subject}@{level.period}"))
            for _ in range(min(period - level.period - 1, MAX_IDLE_FOLDS)):
                level.fold(0)
            level.period = period
        counters.set_flag(self.level, subject, json.dumps(
            {"p": level.period, "m": level.mean, "v": level.variance, "n": level.folded}),
            ttl=LEVEL_KEPT)
        return level
