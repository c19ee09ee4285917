"""The in-process implementation beyond the common suite (``test_conformance.py``): its memory
is bounded.

- Expired occurrences and flags are dropped as the clock passes them: on use, and by a sweep
  of every key once a minute of clock time, so subjects nobody asks about again go too.
- The store holds at most ``max_entries`` occurrences and flags; past it the subjects used
  least recently are forgotten first, never the one just used.
- ``close`` empties it.
"""

from __future__ import annotations

from datetime import timedelta

from sellervault.clock import ManualClock
from sellervault.counters.interface import Flag, Window
from sellervault.counters.local import LocalCounters

FAILURES = Window("test-failures", timedelta(minutes=5))
LOCKED = Flag("test-locked")


def test_expired_occurrences_of_subjects_nobody_asks_about_are_swept() -> None:
    clock = ManualClock()
    counters = LocalCounters(clock)
    for number in range(200):
        counters.hit(FAILURES, f"198.51.100.{number}")
    counters.set_flag(LOCKED, "acc_1", "x", ttl=timedelta(minutes=1))
    counters.set_flag(LOCKED, "acc_2", "x", ttl=None)
    assert counters.entries == 202
    clock.advance(timedelta(minutes=5))
    counters.hit(FAILURES, "203.0.113.1")  # any call past a minute of clock sweeps
    assert counters.entries == 2  # the new hit and the flag without a time to live
    assert counters.count(FAILURES, "198.51.100.1") == 0
    assert counters.flag(LOCKED, "acc_2") == "x"


def test_a_subjects_old_occurrences_go_when_it_is_hit_again() -> None:
    clock = ManualClock()
    counters = LocalCounters(clock)
    for _ in range(50):
        counters.hit(FAILURES, "acc_1")
        clock.advance(10)  # 500 s in all: the first 20 have left the 300 s window
    assert counters.hit(FAILURES, "acc_1") == 30
    assert counters.entries == 30


def test_past_max_entries_the_least_recently_used_subjects_are_forgotten() -> None:
    counters = LocalCounters(ManualClock(), max_entries=10)
    for number in range(8):
        counters.hit(FAILURES, f"acc_{number}")
    counters.hit(FAILURES, "acc_0")  # acc_0 is used again: now acc_1 is the oldest
    counters.set_flag(LOCKED, "acc_9", "x", ttl=None)
    for _ in range(3):
        counters.hit(FAILURES, "acc_busy")
    assert counters.entries == 10
    for forgotten in ("acc_1", "acc_2", "acc_3"):  # one for each busy hit past ten
        assert counters.count(FAILURES, forgotten) == 0
    assert counters.count(FAILURES, "acc_0") == 2
    assert counters.count(FAILURES, "acc_7") == 1
    assert counters.flag(LOCKED, "acc_9") == "x"
    assert counters.count(FAILURES, "acc_busy") == 3


def test_the_subject_just_used_is_never_forgotten_for_room() -> None:
    counters = LocalCounters(ManualClock(), max_entries=3)
    capped = Window("test-wide", timedelta(hours=1), cap=5)
    assert [counters.hit(capped, "acc_1") for _ in range(5)] == [1, 2, 3, 4, 5]
    assert counters.count(capped, "acc_1") == 5


def test_close_empties_the_store() -> None:
    counters = LocalCounters(ManualClock())
    counters.hit(FAILURES, "acc_1")
    counters.set_flag(LOCKED, "acc_1", "x", ttl=None)
    counters.close()
    assert counters.entries == 0
    assert counters.count(FAILURES, "acc_1") == 0
