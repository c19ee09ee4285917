"""The Redis implementation: one count for every server process of a vault (redis-py).

Layout, under ``sellervault:<namespace>:`` (the namespace is a keyed hash of this vault's
counters key, so two vaults sharing a Redis never touch each other's keys):

- ``count:<window>:<subject digest>``: a sorted set, one member per occurrence, scored by the
  clock's time in whole microseconds. ``hit`` is one Lua script (prune what left the window,
  add, trim to the cap, count), which Redis runs atomically: concurrent hits from any
  process get distinct counts.
  ``distinct`` is the same script with the member's keyed hash as the member: noting it
  again moves its score, so the set's size is the number of distinct members.
- ``flag:<flag>:<subject digest>``: a string ``{"v": value, "e": expiry on the clock}``.

Subjects are stored only as keyed hashes (HMAC-SHA256 under the counters key), so no
account id, address or email is readable in Redis. Time is the caller's clock, written into
the data; Redis's own expiry (the window or time to live plus ``GC_MARGIN``) only collects
keys nobody uses any more, and never decides a count.

Redis unreachable, timing out or refusing (down, out of memory, wrong password, a TLS
failure) raises ``CountersUnavailableError`` (503 at the web layer) after one retry on a new
connection; nothing is counted as zero. A retried hit whose first attempt reached Redis
counts twice: the error is on the side of counting more.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sellervault.clock import Clock
from sellervault.config import check_redis_url
from sellervault.counters.errors import CountersUnavailableError
from sellervault.counters.interface import (
    Flag,
    Window,
    check_flag_value,
    check_member,
    check_subject,
    check_times,
    micros,
)

log = logging.getLogger("sellervault.counters")

T = TypeVar("T")

KEY_PREFIX = "sellervault"
GC_MARGIN = timedelta(minutes=10)
"""Added to Redis's expiry of a key beyond what the clock needs, for skew between the
servers' clocks and Redis's."""
CONNECT_TIMEOUT = 1.0  # seconds
COMMAND_TIMEOUT = 2.0  # seconds
RETRIES = 1  # on a new connection: rides over a Redis restart that dropped pooled ones

# Numbers are passed as strings and never computed in Lua: Lua 5.1 turns a number back into
# a string with 14 significant digits, which would round a microsecond score.
_HIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local cap = tonumber(ARGV[3])
local times = math.min(tonumber(ARGV[6]), cap)
if times == 1 then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
else
  for i = 1, times do
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4] .. ':' .. i)
  end
end
local count = redis.call('ZCARD', KEYS[1])
if count > cap then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, count - cap - 1)
  count = cap
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return count
"""


def _millis(span: timedelta) -> int:
    return span // timedelta(milliseconds=1) + 1


def namespace(secret: bytes) -> str:
    """The vault's name in Redis: a keyed hash, so it says nothing and cannot be guessed."""
    return hmac.new(secret, b"sellervault redis namespace", hashlib.sha256).hexdigest()[:16]


class RedisCounters:
    """``Counters`` in Redis, shared by every process given the same ``secret``."""

    def __init__(self, client: redis.Redis, clock: Clock, secret: bytes) -> None:
        self._client = client
        self._clock = clock
        self._secret = secret
        self.prefix = f"{KEY_PREFIX}:{namespace(secret)}:"
        """Every key of this vault starts with it."""
        self.client_name = f"{KEY_PREFIX}-{namespace(secret)}"
        """The name its connections give Redis (``CLIENT LIST``)."""
        self._hit = client.register_script(_HIT)

    @classmethod
    def from_url(cls, url: str, clock: Clock, secret: bytes) -> RedisCounters:
        """Connect lazily (the first command connects): a process starts while Redis is
        down, and its requests that need a counter are refused until Redis is back."""
        check_redis_url(url)
        options: dict[str, Any] = {
            "socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": COMMAND_TIMEOUT,
            "retry": Retry(NoBackoff(), RETRIES),
            "client_name": f"{KEY_PREFIX}-{namespace(secret)}"}
        if url.lower().startswith("rediss:"):  # verify the server's certificate and name
            options.update(ssl_cert_reqs="required", ssl_check_hostname=True)
        return cls(redis.Redis.from_url(url, **options), clock, secret)

    # -- counts --------------------------------------------------------------------------

    def hit(self, window: Window, subject: str, times: int = 1) -> int:
        check_times(times)
        key = self._key("count", window.name, subject)
        now = micros(self._clock.timestamp())
        args = [str(now), str(now - window.micros), str(window.cap), secrets.token_hex(8),
                str(_millis(window.length + GC_MARGIN)), str(times)]
        return int(self._reach(lambda: self._hit(keys=[key], args=args)))

    def distinct(self, window: Window, subject: str, member: str) -> int:
        check_member(member)
        key = self._key("count", window.name, subject)
        now = micros(self._clock.timestamp())
        noted = hmac.new(self._secret, f"member\0{member}".encode(), hashlib.sha256)
        args = [str(now), str(now - window.micros), str(window.cap),
                noted.hexdigest()[:32], str(_millis(window.length + GC_MARGIN)), "1"]
        return int(self._reach(lambda: self._hit(keys=[key], args=args)))

    def count(self, window: Window, subject: str) -> int:
        key = self._key("count", window.name, subject)
        cutoff = micros(self._clock.timestamp()) - window.micros
        return int(self._reach(lambda: self._client.zcount(key, f"({cutoff}", "+inf")))

    def reset(self, window: Window, subject: str) -> None:
        key = self._key("count", window.name, subject)
        self._reach(lambda: self._client.delete(key))

    # -- flags ---------------------------------------------------------------------------

    def set_flag(self, flag: Flag, subject: str, value: str, *,
                 ttl: timedelta | None) -> None:
        check_flag_value(value, ttl)
        key = self._key("flag", flag.name, subject)
        expires = None if ttl is None else (
            micros(self._clock.timestamp()) + ttl // timedelta(microseconds=1))
        stored = json.dumps({"v": value, "e": expires})
        gc_after = None if ttl is None else _millis(ttl + GC_MARGIN)
        self._reach(lambda: self._client.set(key, stored, px=gc_after))

    def flag(self, flag: Flag, subject: str) -> str | None:
        key = self._key("flag", flag.name, subject)
        stored = self._reach(lambda: self._client.get(key))
        if stored is None:
            return None
        found = json.loads(stored)
        if found["e"] is not None and found["e"] <= micros(self._clock.timestamp()):
            return None
        value: str = found["v"]
        return value

    def clear_flag(self, flag: Flag, subject: str) -> None:
        key = self._key("flag", flag.name, subject)
        self._reach(lambda: self._client.delete(key))

    def close(self) -> None:
        self._client.close()

    # -- helpers -------------------------------------------------------------------------

    def _key(self, kind: str, name: str, subject: str) -> str:
        check_subject(subject)
        digest = hmac.new(self._secret, f"{kind}\0{name}\0{subject}".encode(), hashlib.sha256)
        return f"{self.prefix}{kind}:{name}:{digest.hexdigest()[:32]}"

    def _reach(self, command: Callable[[], T]) -> T:
        """Run one Redis command; any Redis failure is ``CountersUnavailableError``, raised
        outside the handler so it keeps no link to redis-py's error."""
        try:
            return command()
        except redis.RedisError as exc:
            failure = type(exc).__name__
        log.warning("shared counters unavailable: %s", failure)
        raise CountersUnavailableError()
