"""What every implementation of the shared counters does (``counters/interface.py``), run
against each: in-process (``LocalCounters``) and Redis (``RedisCounters``, on the real test
Redis). Time is a ``ManualClock`` the test moves, for both: a window slides and a flag
expires when the clock says so, not when the machine or Redis does.

- ``hit`` counts an occurrence and returns the count including it, atomically: of N hits
  at once, from N threads, each sees a different count, 1..N.
- An occurrence counts while less than the window's length has passed; counts are per
  window and per subject; ``reset`` forgets one subject in one window.
- Past a window's cap the count stays at the cap, keeping the newest occurrences.
- A flag reads its value until its time to live has passed (or for ever without one), and
  reads unset once cleared; setting it again replaces value and time to live.
- Two vaults never see each other's counts or flags, even on one Redis.
- Names, subjects, values and times to live that make no sense are refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from sellervault.clock import ManualClock
from sellervault.counters.interface import MAX_FLAG_VALUE, MAX_SUBJECT, Counters, Flag, Window
from sellervault.counters.local import LocalCounters
from sellervault.counters.redis import RedisCounters

IMPLEMENTATIONS = ["in-process", "redis"]

FAILURES = Window("test-failures", timedelta(hours=1))
REQUESTS = Window("test-requests", timedelta(minutes=5))
LOCKED = Flag("test-locked")
SWITCH = Flag("test-switch")
ACCOUNT = "acc_0123456789abcdef01234567"
ADDRESS = "2001:db8::7"


@pytest.fixture(params=IMPLEMENTATIONS)
def new_vault(request: pytest.FixtureRequest,
              clock: ManualClock) -> Iterator[Callable[[], Counters]]:
    """Makes the counters of one more vault on the test's clock (on Redis: another
    counters key, the same Redis)."""
    if request.param == "redis":
        make_redis: Callable[..., RedisCounters] = request.getfixturevalue("redis_counters")
        yield lambda: make_redis(clock)
        return
    made: list[LocalCounters] = []

    def make() -> Counters:
        made.append(LocalCounters(clock))
        return made[-1]

    yield make
    for counters in made:
        counters.close()


@pytest.fixture
def counters(new_vault: Callable[[], Counters]) -> Counters:
    return new_vault()


# -- counting ----------------------------------------------------------------------------------

def test_a_hit_returns_the_count_that_includes_it(counters: Counters) -> None:
    assert counters.count(FAILURES, ACCOUNT) == 0
    assert [counters.hit(FAILURES, ACCOUNT) for _ in range(3)] == [1, 2, 3]
    assert counters.count(FAILURES, ACCOUNT) == 3


def test_an_occurrence_counts_until_the_window_has_passed(counters: Counters,
                                                          clock: ManualClock) -> None:
    counters.hit(FAILURES, ACCOUNT)
    clock.advance(timedelta(minutes=40))
    assert counters.hit(FAILURES, ACCOUNT) == 2
    clock.advance(timedelta(minutes=20) - timedelta(microseconds=1))
    assert counters.count(FAILURES, ACCOUNT) == 2  # the first is 1 us short of an hour old
    clock.advance(timedelta(microseconds=1))
    assert counters.count(FAILURES, ACCOUNT) == 1  # an hour old: out of the window
    assert counters.hit(FAILURES, ACCOUNT) == 2  # a hit counts only what is in the window
    clock.advance(timedelta(hours=1))
    assert counters.count(FAILURES, ACCOUNT) == 0


def test_the_window_slides_a_long_way_on_the_clock_alone(counters: Counters,
                                                         clock: ManualClock) -> None:
    """A day passes on the clock in no time: Redis's own expiry plays no part."""
    long = Window("test-daily", timedelta(days=1))
    counters.hit(long, ADDRESS)
    clock.advance(timedelta(hours=23, minutes=59))
    assert counters.hit(long, ADDRESS) == 2
    clock.advance(timedelta(minutes=1))
    assert counters.count(long, ADDRESS) == 1


def test_counts_are_per_subject_and_per_window(counters: Counters) -> None:
    counters.hit(FAILURES, ACCOUNT)
    counters.hit(FAILURES, ACCOUNT)
    counters.hit(FAILURES, ADDRESS)
    counters.hit(REQUESTS, ACCOUNT)
    assert counters.count(FAILURES, ACCOUNT) == 2
    assert counters.count(FAILURES, ADDRESS) == 1
    assert counters.count(REQUESTS, ACCOUNT) == 1
    assert counters.count(REQUESTS, ADDRESS) == 0


def test_reset_forgets_one_subject_in_one_window(counters: Counters) -> None:
    for _ in range(3):
        counters.hit(FAILURES, ACCOUNT)
    counters.hit(FAILURES, ADDRESS)
    counters.hit(REQUESTS, ACCOUNT)
    counters.reset(FAILURES, ACCOUNT)
    assert counters.count(FAILURES, ACCOUNT) == 0
    assert counters.count(FAILURES, ADDRESS) == 1
    assert counters.count(REQUESTS, ACCOUNT) == 1
    assert counters.hit(FAILURES, ACCOUNT) == 1  # counting starts again
    counters.reset(FAILURES, "never-seen")  # nothing to forget: no error


def test_past_the_cap_the_count_stays_at_the_cap(counters: Counters,
                                                 clock: ManualClock) -> None:
    """The newest occurrences are the ones kept, so the count is min(true count, cap) while
    the window slides: a threshold at or below the cap is never missed."""
    capped = Window("test-capped", timedelta(seconds=10), cap=3)
    counts = []
    for _ in range(5):  # at 0, 1, 2, 3, 4 s
        counts.append(counters.hit(capped, ACCOUNT))
        clock.advance(1)
    assert counts == [1, 2, 3, 3, 3]
    clock.advance(6)  # at 11 s: the hits at 0 and 1 s have left; 2, 3 and 4 s remain
    assert counters.count(capped, ACCOUNT) == 3
    clock.advance(1)  # at 12 s: the hit at 2 s has left too
    assert counters.count(capped, ACCOUNT) == 2


def test_concurrent_hits_see_distinct_counts(counters: Counters) -> None:
    """The race a threshold check must survive: 48 threads hit one subject at once; each
    count is handed out exactly once, so exactly the first five pass a 'below 5' check."""
    threads = 48
    start = threading.Barrier(threads)

    def hit() -> int:
        start.wait()
        return counters.hit(FAILURES, ACCOUNT)

    with ThreadPoolExecutor(threads) as pool:
        counts = list(pool.map(lambda _: hit(), range(threads)))
    assert sorted(counts) == list(range(1, threads + 1))
    assert sum(count <= 5 for count in counts) == 5
    assert counters.count(FAILURES, ACCOUNT) == threads


# -- flags -------------------------------------------------------------------------------------

def test_a_flag_reads_its_value_until_its_time_to_live_has_passed(
        counters: Counters, clock: ManualClock) -> None:
    assert counters.flag(LOCKED, ACCOUNT) is None
    counters.set_flag(LOCKED, ACCOUNT, "too-many-failures", ttl=timedelta(minutes=15))
    assert counters.flag(LOCKED, ACCOUNT) == "too-many-failures"
    clock.advance(timedelta(minutes=15) - timedelta(microseconds=1))
    assert counters.flag(LOCKED, ACCOUNT) == "too-many-failures"
    clock.advance(timedelta(microseconds=1))
    assert counters.flag(LOCKED, ACCOUNT) is None


def test_a_flag_without_time_to_live_stays_until_cleared(counters: Counters,
                                                         clock: ManualClock) -> None:
    counters.set_flag(SWITCH, "reveal", "off", ttl=None)
    clock.advance(timedelta(days=400))
    assert counters.flag(SWITCH, "reveal") == "off"
    counters.clear_flag(SWITCH, "reveal")
    assert counters.flag(SWITCH, "reveal") is None
    counters.clear_flag(SWITCH, "reveal")  # clearing an unset flag is no error


def test_setting_a_flag_again_replaces_its_value_and_time_to_live(
        counters: Counters, clock: ManualClock) -> None:
    counters.set_flag(LOCKED, ACCOUNT, "first", ttl=timedelta(minutes=1))
    counters.set_flag(LOCKED, ACCOUNT, "second", ttl=timedelta(hours=1))
    clock.advance(timedelta(minutes=30))
    assert counters.flag(LOCKED, ACCOUNT) == "second"
    counters.set_flag(LOCKED, ACCOUNT, "third", ttl=None)
    clock.advance(timedelta(days=2))
    assert counters.flag(LOCKED, ACCOUNT) == "third"
    counters.set_flag(LOCKED, ACCOUNT, "fourth", ttl=timedelta(seconds=1))
    clock.advance(1)
    assert counters.flag(LOCKED, ACCOUNT) is None


def test_flags_are_per_name_and_per_subject(counters: Counters) -> None:
    counters.set_flag(LOCKED, ACCOUNT, "yes", ttl=None)
    counters.set_flag(SWITCH, ADDRESS, "", ttl=None)  # an empty value is a value
    assert counters.flag(LOCKED, ADDRESS) is None
    assert counters.flag(SWITCH, ACCOUNT) is None
    assert counters.flag(SWITCH, ADDRESS) == ""
    counters.clear_flag(LOCKED, ACCOUNT)
    assert counters.flag(SWITCH, ADDRESS) == ""


def test_flags_and_counts_do_not_share_names(counters: Counters) -> None:
    same_name = Flag(FAILURES.name)
    counters.hit(FAILURES, ACCOUNT)
    counters.set_flag(same_name, ACCOUNT, "set", ttl=None)
    assert counters.count(FAILURES, ACCOUNT) == 1
    counters.reset(FAILURES, ACCOUNT)
    assert counters.flag(same_name, ACCOUNT) == "set"


def test_a_flag_holds_any_text(counters: Counters) -> None:
    value = '{"by": "acc_1", "why": "kill switch: ünïcode, quotes \\" and colons:"}'
    counters.set_flag(SWITCH, "ingest", value, ttl=timedelta(hours=1))
    assert counters.flag(SWITCH, "ingest") == value


# -- two vaults --------------------------------------------------------------------------------

def test_two_vaults_never_see_each_others_counts_or_flags(
        new_vault: Callable[[], Counters]) -> None:
    ours, theirs = new_vault(), new_vault()
    ours.hit(FAILURES, ACCOUNT)
    ours.set_flag(LOCKED, ACCOUNT, "ours", ttl=None)
    assert theirs.count(FAILURES, ACCOUNT) == 0
    assert theirs.flag(LOCKED, ACCOUNT) is None
    assert theirs.hit(FAILURES, ACCOUNT) == 1
    theirs.reset(FAILURES, ACCOUNT)
    theirs.clear_flag(LOCKED, ACCOUNT)
    assert ours.count(FAILURES, ACCOUNT) == 1
    assert ours.flag(LOCKED, ACCOUNT) == "ours"


# -- refusals ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["", "Upper", "with space", "colon:inside", "-leading",
                                  "x" * 64, "login/failures"])
def test_a_window_or_flag_name_outside_the_vocabulary_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        Window(name, timedelta(hours=1))
    with pytest.raises(ValueError, match="name"):
        Flag(name)


def test_a_window_needs_a_length_and_a_cap() -> None:
    with pytest.raises(ValueError, match="at least a microsecond"):
        Window("test-empty", timedelta(0))
    with pytest.raises(ValueError, match="at least one occurrence"):
        Window("test-nothing-kept", timedelta(hours=1), cap=0)


@pytest.mark.parametrize("subject", ["", "x" * (MAX_SUBJECT + 1)])
def test_an_empty_or_unbounded_subject_is_refused_and_changes_nothing(
        counters: Counters, subject: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: counters.hit(FAILURES, subject), lambda: counters.count(FAILURES, subject),
        lambda: counters.reset(FAILURES, subject),
        lambda: counters.set_flag(LOCKED, subject, "x", ttl=None),
        lambda: counters.flag(LOCKED, subject), lambda: counters.clear_flag(LOCKED, subject)]
    for call in calls:
        with pytest.raises(ValueError, match="subject"):
            call()
    assert counters.hit(FAILURES, "x" * MAX_SUBJECT) == 1  # the longest allowed works


def test_a_flag_with_an_oversized_value_or_no_time_to_live_is_refused(
        counters: Counters) -> None:
    with pytest.raises(ValueError, match="value"):
        counters.set_flag(LOCKED, ACCOUNT, "x" * (MAX_FLAG_VALUE + 1), ttl=None)
    for ttl in (timedelta(0), timedelta(seconds=-1)):
        with pytest.raises(ValueError, match="time to live"):
            counters.set_flag(LOCKED, ACCOUNT, "x", ttl=ttl)
    assert counters.flag(LOCKED, ACCOUNT) is None


# -- distinct members ------------------------------------------------------------------------

BUYERS = Window("test-buyers", timedelta(minutes=5), cap=50)


def test_distinct_counts_each_member_once(counters: Counters) -> None:
    noted = [counters.distinct(BUYERS, ACCOUNT, member) for member in ("b1", "b2", "b1", "b3")]
    assert noted == [1, 2, 2, 3]
    assert counters.count(BUYERS, ACCOUNT) == 3


def test_a_member_counts_from_its_latest_noting(counters: Counters,
                                                clock: ManualClock) -> None:
    counters.distinct(BUYERS, ACCOUNT, "b1")
    clock.advance(200)
    counters.distinct(BUYERS, ACCOUNT, "b2")
    counters.distinct(BUYERS, ACCOUNT, "b1")  # noted again: its window starts again
    clock.advance(200)  # the first noting of b1 is 400 s old, its latest 200 s
    assert counters.count(BUYERS, ACCOUNT) == 2
    clock.advance(101)
    assert counters.count(BUYERS, ACCOUNT) == 0
    assert counters.distinct(BUYERS, ACCOUNT, "b3") == 1


def test_distinct_members_are_per_subject_and_stop_at_the_cap(counters: Counters) -> None:
    for index in range(60):
        counters.distinct(BUYERS, ACCOUNT, f"b{index}")
    assert counters.count(BUYERS, ACCOUNT) == BUYERS.cap
    assert counters.distinct(BUYERS, ADDRESS, "b1") == 1


def test_concurrent_notings_of_new_members_see_distinct_counts(counters: Counters) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = list(pool.map(lambda i: counters.distinct(BUYERS, ACCOUNT, f"m{i}"), range(40)))
    assert sorted(seen) == list(range(1, 41))


@pytest.mark.parametrize("member", ["", "m" * 129])
def test_an_empty_or_unbounded_member_is_refused(counters: Counters, member: str) -> None:
    with pytest.raises(ValueError, match="member"):
        counters.distinct(BUYERS, ACCOUNT, member)
    assert counters.count(BUYERS, ACCOUNT) == 0


def test_a_hit_may_count_many_occurrences_at_once(counters: Counters) -> None:
    assert counters.hit(FAILURES, ACCOUNT, times=7) == 7
    assert counters.hit(FAILURES, ACCOUNT) == 8
    assert counters.hit(BUYERS, ADDRESS, times=500) == BUYERS.cap  # (a cap of 50)
    for times in (0, -1, 100_001):
        with pytest.raises(ValueError, match="occurrences"):
            counters.hit(FAILURES, ACCOUNT, times=times)
    assert counters.count(FAILURES, ACCOUNT) == 8
