"""The in-process implementation (the embedded default): one process's counts, in memory.

Right for one server process. Two processes each keep their own counts, so a limit would be
the limit per process; run Redis (``SELLERVAULT_REDIS_URL``) before running more than one.

Memory is bounded twice: a subject keeps at most its window's ``cap`` occurrences, and the
whole store at most ``max_entries`` (occurrences and flags together). Expired occurrences
and flags are dropped as the clock passes them (on use, and in a sweep of every key once a
minute of clock time). Past ``max_entries`` the subjects counted or set least recently are
forgotten first (never the one being counted, which may alone hold up to its window's cap):
filling a million entries takes a million counted events (each a failed login, say), and
until then nothing is forgotten early.
"""

from __future__ import annotations

import threading
from bisect import bisect_right, insort
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta

from sellervault.clock import Clock
from sellervault.counters.interface import (
    Flag,
    Window,
    check_flag_value,
    check_member,
    check_subject,
    check_times,
    micros,
)

DEFAULT_MAX_ENTRIES = 1_000_000
SWEEP_EVERY = 60 * 1_000_000  # microseconds of clock time between sweeps of every key


@dataclass(slots=True)
class _Occurrences:
    """One subject's occurrences in one window: sorted clock readings (microseconds)."""

    window_micros: int
    moments: list[int]

    def prune(self, now: int) -> None:
        del self.moments[:bisect_right(self.moments, now - self.window_micros)]

    def expired(self, now: int) -> bool:
        self.prune(now)
        return not self.moments

    def size(self) -> int:
        return len(self.moments)


@dataclass(slots=True)
class _Members:
    """One subject's distinct members in one window: each member's latest noting
    (microseconds), oldest first."""

    window_micros: int
    moments: OrderedDict[str, int]

    def prune(self, now: int) -> None:
        cutoff = now - self.window_micros
        while self.moments and next(iter(self.moments.values())) <= cutoff:
            self.moments.popitem(last=False)

    def expired(self, now: int) -> bool:
        self.prune(now)
        return not self.moments

    def size(self) -> int:
        return len(self.moments)

    def after(self, cutoff: int) -> int:
        return sum(1 for moment in self.moments.values() if moment > cutoff)


@dataclass(slots=True)
class _FlagValue:
    value: str
    expires: int | None  # microseconds on the clock; None: until cleared

    def expired(self, now: int) -> bool:
        return self.expires is not None and self.expires <= now

    def size(self) -> int:
        return 1


_Key = tuple[str, str, str]  # ("count" | "flag", window or flag name, subject)


class LocalCounters:
    """``Counters`` in this process: thread-safe (one lock; each call is short)."""

    def __init__(self, clock: Clock, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._entries: OrderedDict[_Key, _Occurrences | _Members | _FlagValue] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._last_sweep = micros(clock.timestamp())

    # -- counts --------------------------------------------------------------------------

    def hit(self, window: Window, subject: str, times: int = 1) -> int:
        check_subject(subject)
        check_times(times)
        key = ("count", window.name, subject)
        with self._lock:
            now = self._now()
            entry = self._entries.get(key)
            if not isinstance(entry, _Occurrences):
                self._drop(key)  # (a window misused for distinct members: start again)
                entry = _Occurrences(window.micros, [])
                self._entries[key] = entry
            before = entry.size()
            entry.window_micros = window.micros
            entry.prune(now)
            for _ in range(min(times, window.cap)):
                insort(entry.moments, now)
            del entry.moments[:max(0, entry.size() - window.cap)]  # keep the newest cap
            self._size += entry.size() - before
            self._entries.move_to_end(key)
            self._evict(keep=key)
            return entry.size()

    def distinct(self, window: Window, subject: str, member: str) -> int:
        check_subject(subject)
        check_member(member)
        key = ("count", window.name, subject)
        with self._lock:
            now = self._now()
            entry = self._entries.get(key)
            if not isinstance(entry, _Members):
                self._drop(key)  # (a window misused for occurrences: start again)
                entry = _Members(window.micros, OrderedDict())
                self._entries[key] = entry
            before = entry.size()
            entry.window_micros = window.micros
            entry.prune(now)
            entry.moments.pop(member, None)
            entry.moments[member] = now  # the newest, last
            while entry.size() > window.cap:
                entry.moments.popitem(last=False)
            self._size += entry.size() - before
            self._entries.move_to_end(key)
            self._evict(keep=key)
            return entry.size()

    def count(self, window: Window, subject: str) -> int:
        check_subject(subject)
        with self._lock:
            entry = self._entries.get(("count", window.name, subject))
            cutoff = self._now() - window.micros
            if isinstance(entry, _Members):
                return entry.after(cutoff)
            if not isinstance(entry, _Occurrences):
                return 0
            return entry.size() - bisect_right(entry.moments, cutoff)

    def reset(self, window: Window, subject: str) -> None:
        check_subject(subject)
        with self._lock:
            self._drop(("count", window.name, subject))

    # -- flags ---------------------------------------------------------------------------

    def set_flag(self, flag: Flag, subject: str, value: str, *,
                 ttl: timedelta | None) -> None:
        check_subject(subject)
        check_flag_value(value, ttl)
        key = ("flag", flag.name, subject)
        with self._lock:
            now = self._now()
            self._drop(key)
            expires = None if ttl is None else now + ttl // timedelta(microseconds=1)
            self._entries[key] = _FlagValue(value, expires)
            self._size += 1
            self._evict(keep=key)

    def flag(self, flag: Flag, subject: str) -> str | None:
        check_subject(subject)
        with self._lock:
            entry = self._entries.get(("flag", flag.name, subject))
            if not isinstance(entry, _FlagValue) or entry.expired(self._now()):
                return None
            return entry.value

    def clear_flag(self, flag: Flag, subject: str) -> None:
        check_subject(subject)
        with self._lock:
            self._drop(("flag", flag.name, subject))

    def close(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0

    # -- memory (called with the lock held) ----------------------------------------------

    @property
    def entries(self) -> int:
        """Occurrences and flags held now (expired ones until their sweep)."""
        with self._lock:
            return self._size

    def _now(self) -> int:
        """The clock, in microseconds; sweeps expired keys once a minute of clock time."""
        now = micros(self._clock.timestamp())
        if now - self._last_sweep >= SWEEP_EVERY:
            self._last_sweep = now
            for key in [key for key, entry in self._entries.items() if entry.expired(now)]:
                self._drop(key)
            self._size = sum(entry.size() for entry in self._entries.values())
        return now

    def _drop(self, key: _Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._size -= entry.size()

    def _evict(self, keep: _Key) -> None:
        """Forget the least recently used subjects until the store fits again."""
        while self._size > self._max_entries:
            oldest = next(iter(self._entries))
            if oldest == keep:
                return
            self._drop(oldest)
