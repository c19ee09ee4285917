"""The jobs' tests run on a runtime whose clock stands still until a test moves it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sellervault.clock import ManualClock
from sellervault.runtime import Runtime


@pytest.fixture
def rt(runtime: Runtime, clock: ManualClock) -> Runtime:
    """The test's instance (SQLite, then PostgreSQL), reading the time from ``clock``."""
    return replace(runtime, clock=clock)
