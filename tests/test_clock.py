"""The one clock: SellerVault reads the time only from ``Runtime.clock``.

- The system clock gives aware UTC times; a ManualClock stands still until moved, only
  forwards, and is safe to move while other threads read it.
- No module of ``src/`` reads the time any other way (``datetime.now``, ``time.time``,
  ``utcnow``...): every deadline can be reached in a test by moving the clock.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sellervault.clock import ManualClock, SystemClock

SOURCE = Path(__file__).resolve().parent.parent / "src" / "sellervault"
# Reads of the wall clock that bypass the runtime's: the forms a module could use.
_READS = re.compile(r"datetime\.now\(|datetime\.utcnow\(|\butcnow\(|time\.time\(|time\.time_ns\("
                    r"|date\.today\(|datetime\.today\(|time\.localtime\(|time\.gmtime\(")


def test_the_system_clock_is_aware_utc() -> None:
    now = SystemClock().now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert abs(SystemClock().timestamp() - now.timestamp()) < 5


def test_a_manual_clock_stands_still_until_moved() -> None:
    start = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    clock = ManualClock(start)
    assert clock.now() == clock.now() == start
    assert clock.advance(timedelta(hours=72)) == start + timedelta(hours=72)
    clock.advance(30)
    assert clock.timestamp() == (start + timedelta(hours=72, seconds=30)).timestamp()
    clock.set(datetime(2027, 1, 1, tzinfo=UTC))
    assert clock.now() == datetime(2027, 1, 1, tzinfo=UTC)


def test_a_manual_clock_never_runs_backwards_or_loses_its_zone() -> None:
    clock = ManualClock(datetime(2026, 12, 4, tzinfo=UTC))
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(datetime(2026, 12, 3, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone"):
        clock.set(datetime(2026, 12, 5))
    with pytest.raises(ValueError, match="timezone"):
        ManualClock(datetime(2026, 12, 5))


def test_a_manual_clock_moved_from_many_threads_loses_no_step() -> None:
    clock = ManualClock(datetime(2026, 12, 4, tzinfo=UTC))
    threads = [threading.Thread(target=lambda: [clock.advance(1) for _ in range(1000)])
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clock.now() == datetime(2026, 12, 4, tzinfo=UTC) + timedelta(seconds=8000)


def test_no_module_reads_the_time_but_the_clock() -> None:
    readers = sorted(
        f"{path.relative_to(SOURCE)}:{number}: {line.strip()}"
        for path in SOURCE.rglob("*.py") if path.name != "clock.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _READS.search(line.split("#", 1)[0]))
    assert readers == []


def test_the_search_for_other_clocks_finds_them() -> None:
    """The grep above can fail: each form it looks for is found."""
    for line in ("datetime.now(UTC)", "stamp = utcnow()", "time.time()", "time.time_ns()",
                 "datetime.utcnow()", "date.today()"):
        assert _READS.search(line), line
