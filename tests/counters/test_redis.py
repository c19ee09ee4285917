"""The Redis implementation beyond the common suite (``test_conformance.py``), on the real test
Redis:

- Two processes of one vault (the same counters key) share one count: hits from two OS
  processes at once still get distinct counts, 1..N.
- Redis holds no subject in clear (keys carry keyed hashes), and every key of a vault sits
  under its own prefix.
- Redis's expiry only collects what the clock has already expired: a key lives for its window
  or time to live plus a margin; a flag without one never expires.
- A Redis that is unreachable or refuses us raises ``CountersUnavailableError``: never a
  zero, and never the URL's password in the error, its cause or the log. A connection Redis
  dropped (a restart) is replaced without an error.
- The URL is checked here too: no plain TCP off loopback.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta

import pytest
import redis

from sellervault.clock import ManualClock
from sellervault.counters.errors import CountersUnavailableError
from sellervault.counters.interface import Flag, Window
from sellervault.counters.redis import GC_MARGIN, RedisCounters

FAILURES = Window("test-failures", timedelta(hours=1))
LOCKED = Flag("test-locked")
PASSWORD = "redis-pw-5e1f9c"
SECRET = bytes(range(32))

MakeRedis = Callable[..., RedisCounters]

# One process of the vault: connects, says "ready", waits for "go" on stdin, then hits from
# its threads at once and prints the counts it got.
HAMMER = """
import json, sys, threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from sellervault.clock import ManualClock
from sellervault.counters.interface import Window
from sellervault.counters.redis import RedisCounters

url, secret, start, threads = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3], int(sys.argv[4])
counters = RedisCounters.from_url(url, ManualClock(datetime.fromisoformat(start)), secret)
window = Window("test-failures", timedelta(hours=1))
counters.count(window, "acc_shared")  # connected before the start
print("ready", flush=True)
sys.stdin.readline()
barrier = threading.Barrier(threads)
def hit(_):
    barrier.wait()
    return counters.hit(window, "acc_shared")
with ThreadPoolExecutor(threads) as pool:
    print(json.dumps(list(pool.map(hit, range(threads)))), flush=True)
"""


def _keys(url: str, counters: RedisCounters) -> list[str]:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        return sorted(client.scan_iter(match=counters.prefix + "*"))


def test_two_processes_of_one_vault_hand_out_each_count_once(
        redis_url: str, redis_counters: MakeRedis) -> None:
    clock = ManualClock()
    ours = redis_counters(clock, SECRET)  # the same vault, in this process
    threads = 16
    processes = [subprocess.Popen(
        [sys.executable, "-c", HAMMER, redis_url, SECRET.hex(), clock.now().isoformat(),
         str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"}) for _ in range(2)]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        counts = []
        for process in processes:
            output, _ = process.communicate(timeout=60)
            assert process.returncode == 0
            counts += json.loads(output)
    finally:
        for process in processes:
            process.kill()
    assert sorted(counts) == list(range(1, 2 * threads + 1))
    assert ours.count(FAILURES, "acc_shared") == 2 * threads


def test_redis_holds_no_subject_in_clear(redis_url: str, redis_counters: MakeRedis) -> None:
    counters = redis_counters(ManualClock())
    email, address = "pat.picker@example.test", "198.51.100.23"
    counters.hit(FAILURES, email)
    counters.set_flag(LOCKED, address, "locked", ttl=None)
    keys = _keys(redis_url, counters)
    assert len(keys) == 2
    assert all(key.startswith(counters.prefix) for key in keys)
    with redis.Redis.from_url(redis_url) as client:
        members = client.zrange(keys[0], 0, -1)
    dump = " ".join(keys).encode() + b" ".join(members)
    for subject in (email, address, "pat", "198.51"):
        assert subject.encode() not in dump


def test_redis_expiry_only_collects_what_the_clock_has_expired(
        redis_url: str, redis_counters: MakeRedis) -> None:
    counters = redis_counters(ManualClock())
    counters.hit(FAILURES, "acc_1")
    counters.set_flag(LOCKED, "acc_1", "x", ttl=timedelta(minutes=15))
    counters.set_flag(LOCKED, "acc_2", "x", ttl=None)
    with redis.Redis.from_url(redis_url) as client:
        count_key, flag_key, forever_key = (counters._key("count", FAILURES.name, "acc_1"),
                                            counters._key("flag", LOCKED.name, "acc_1"),
                                            counters._key("flag", LOCKED.name, "acc_2"))
        margin = GC_MARGIN // timedelta(milliseconds=1)
        hour, quarter = 3_600_000, 900_000
        assert hour + margin - 5_000 < client.pttl(count_key) <= hour + margin + 1
        assert quarter + margin - 5_000 < client.pttl(flag_key) <= quarter + margin + 1
        assert client.pttl(forever_key) == -1  # no expiry: until cleared


def test_a_redis_that_is_not_there_is_unavailable_never_zero(
        caplog: pytest.LogCaptureFixture) -> None:
    counters = RedisCounters.from_url(f"redis://:{PASSWORD}@127.0.0.1:1/0", ManualClock(),
                                      SECRET)
    calls: list[Callable[[], object]] = [
        lambda: counters.hit(FAILURES, "acc_1"), lambda: counters.count(FAILURES, "acc_1"),
        lambda: counters.reset(FAILURES, "acc_1"),
        lambda: counters.set_flag(LOCKED, "acc_1", "x", ttl=None),
        lambda: counters.flag(LOCKED, "acc_1"), lambda: counters.clear_flag(LOCKED, "acc_1")]
    with caplog.at_level(logging.WARNING, logger="sellervault.counters"):
        for call in calls:
            with pytest.raises(CountersUnavailableError) as caught:
                call()
            _assert_says_nothing_of_the_url(caught.value)
    assert len(caplog.records) == len(calls)
    assert all(record.getMessage() == "shared counters unavailable: ConnectionError"
               for record in caplog.records)
    counters.close()


def test_a_redis_that_refuses_our_password_is_unavailable(
        redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The test Redis has no user of that name: its AUTH is refused (WRONGPASS) as a wrong
    password would be."""
    with_password = redis_url.replace("redis://", f"redis://nobody:{PASSWORD}@", 1)
    counters = RedisCounters.from_url(with_password, ManualClock(), SECRET)
    with (caplog.at_level(logging.WARNING, logger="sellervault.counters"),
          pytest.raises(CountersUnavailableError) as caught):
        counters.hit(FAILURES, "acc_1")
    _assert_says_nothing_of_the_url(caught.value)
    assert PASSWORD not in caplog.text
    counters.close()


def _assert_says_nothing_of_the_url(error: CountersUnavailableError) -> None:
    assert str(error) == "a shared counter could not be reached; try again shortly"
    assert error.__cause__ is None and error.__context__ is None
    assert PASSWORD not in repr(error.args)


def test_a_connection_redis_dropped_is_replaced_without_an_error(
        redis_url: str, redis_counters: MakeRedis) -> None:
    """A Redis restart drops every pooled connection; the next command reconnects once."""
    counters = redis_counters(ManualClock())
    assert counters.hit(FAILURES, "acc_1") == 1
    with redis.Redis.from_url(redis_url) as admin:
        ours = [client["id"] for client in admin.client_list()
                if client["name"] == counters.client_name]
        assert ours
        for client_id in ours:
            admin.client_kill_filter(_id=client_id)
    assert counters.hit(FAILURES, "acc_1") == 2


def test_the_url_is_checked_before_connecting() -> None:
    with pytest.raises(ValueError, match="non-loopback host without TLS"):
        RedisCounters.from_url(f"redis://:{PASSWORD}@redis.internal:6379/0", ManualClock(),
                               SECRET)
