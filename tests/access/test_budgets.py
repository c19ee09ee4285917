"""access.budgets: a budget per principal and window, counted in the database.

- Each take uses one unit; past the limit, ``BudgetExhaustedError`` with the seconds left.
- A new window starts the count again; a take whose clock is behind (another process, an
  earlier window) counts against the newer window, never starts it again.
- A take is given back if its transaction rolls back.
(Concurrency: tests/web/test_orders_api.py, parallel searches through the server.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sellervault.access import budgets
from sellervault.access.budgets import Budget
from sellervault.access.errors import BudgetExhaustedError
from sellervault.runtime import Runtime

BUDGET = Budget("test-budget", limit=2, window_seconds=3600)
HOUR = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def _take(runtime: Runtime, at: datetime, principal: str = "acc_a") -> int:
    with runtime.store.transaction() as session:
        return budgets.take(session, BUDGET, principal, at)


def test_the_limit_holds_within_a_window(runtime: Runtime) -> None:
    assert _take(runtime, HOUR + timedelta(minutes=1)) == 1
    assert _take(runtime, HOUR + timedelta(minutes=2)) == 2
    with pytest.raises(BudgetExhaustedError) as refused:
        _take(runtime, HOUR + timedelta(minutes=50))
    assert refused.value.retry_after == 600
    assert _take(runtime, HOUR + timedelta(minutes=3), principal="acc_b") == 1


def test_a_new_window_starts_again(runtime: Runtime) -> None:
    _take(runtime, HOUR)
    _take(runtime, HOUR)
    assert _take(runtime, HOUR + timedelta(hours=1)) == 1


def test_a_clock_behind_cannot_reset_a_newer_window(runtime: Runtime) -> None:
    """The review's case: two processes whose clocks differ across the hour. Before, the one
    behind started the count again at 1 on every take."""
    _take(runtime, HOUR + timedelta(hours=1, seconds=1))
    assert _take(runtime, HOUR + timedelta(minutes=59, seconds=59)) == 2  # the newer window
    with pytest.raises(BudgetExhaustedError):
        _take(runtime, HOUR + timedelta(minutes=59, seconds=58))


def test_a_rolled_back_take_is_given_back(runtime: Runtime) -> None:
    with pytest.raises(RuntimeError), runtime.store.transaction() as session:
        budgets.take(session, BUDGET, "acc_a", HOUR)
        raise RuntimeError("the search failed")
    assert _take(runtime, HOUR) == 1
