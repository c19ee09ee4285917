"""monitoring.baselines: a principal's usual level per period, learned from exact per-period
counts in the shared counters, and the limit above which a period is unusual."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sellervault.clock import ManualClock
from sellervault.counters.local import LocalCounters
from sellervault.monitoring.baselines import WARM_UP, Baseline, Level

RATE = Baseline("test-rate", timedelta(minutes=1), cap=10_000)


def test_a_steady_count_is_learned_with_no_spread() -> None:
    level = Level(0)
    for _ in range(200):
        level.fold(40)
    assert level.mean == pytest.approx(40)
    assert level.variance == pytest.approx(0, abs=1e-3)
    assert level.limit(floor=60) == 60  # never under the floor
    assert level.limit(floor=10) == pytest.approx(40, abs=0.01)


def test_a_noisy_count_allows_three_standard_deviations() -> None:
    level = Level(0)
    for index in range(400):
        level.fold(90 if index % 2 else 110)
    limit = level.limit(floor=60)
    assert limit is not None
    assert 125 < limit < 135  # 100 + 3 x 10


def test_nothing_is_unusual_while_the_baseline_warms_up() -> None:
    level = Level(0)
    for _ in range(WARM_UP - 1):
        level.fold(5)
    assert level.limit(floor=60) is None
    level.fold(5)
    assert level.limit(floor=60) == 60


def _count(counters: LocalCounters, clock: ManualClock, times: int) -> int:
    period = RATE.period_of(clock.timestamp())
    RATE.current(counters, "acc_a", period)
    for _ in range(times):
        counters.hit(RATE.counts, f"acc_a@{period}")
    return period


def test_each_finished_period_is_folded_once_and_idle_periods_as_zeros(
        clock: ManualClock) -> None:
    counters = LocalCounters(clock)
    first = _count(counters, clock, 30)
    clock.advance(60)
    level = RATE.current(counters, "acc_a", first + 1)
    assert (level.folded, level.mean) == (1, pytest.approx(3.0))  # 0.1 x 30
    assert RATE.current(counters, "acc_a", first + 1).folded == 1  # not folded twice
    clock.advance(5 * 60)
    idle = RATE.current(counters, "acc_a", first + 6)
    assert idle.folded == 6 and idle.mean == pytest.approx(3.0 * 0.9**5)


def test_two_processes_sharing_the_counters_share_the_baseline(clock: ManualClock) -> None:
    """The level is stored in the shared counters: what one process folded, the other
    reads (here one LocalCounters stands for one Redis)."""
    shared = LocalCounters(clock)
    first = _count(shared, clock, 12)
    clock.advance(60)
    assert RATE.current(shared, "acc_a", first + 1).mean == pytest.approx(1.2)
    assert RATE.current(shared, "acc_b", first + 1).folded == 0  # another principal's own
