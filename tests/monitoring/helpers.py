"""What the alert tests share."""

from __future__ import annotations

from sellervault.clock import ManualClock
from sellervault.monitoring import alerts
from sellervault.runtime import Runtime


def canary_alert_behind(runtime: Runtime, newer: int, window: str, prefix: str) -> str:
    """A canary's critical alert, then ``newer`` alerts a second later (what ten denied
    calls from each of as many IPv6 addresses ``prefix::N`` raise): the canary's id."""
    assert isinstance(runtime.clock, ManualClock)
    canary = alerts.raise_alert(runtime, "canary-access", "critical", "acc_insider",
                                "acc_insider", window)
    assert canary is not None
    runtime.clock.advance(1)
    for i in range(newer):
        alerts.raise_alert(runtime, "unauthorized-calls", "high", f"address:{prefix}::{i:x}",
                           None, window)
    return canary
