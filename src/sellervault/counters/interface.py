"""What every implementation of the shared counters does: sliding-window counts and flags with
a time to live, keyed by a declared window or flag and a subject (an account id, an address).

Windows and flags are declared once, as constants beside the code that uses them
(``accounts/login_failures.py``): a name is the identity of its data, so one name has one
length, and a name is never reused for something else.

Time is the caller's ``Clock`` in every implementation, never the machine's or Redis's: a
window slides and a flag expires when the injected clock says so, so a test moves a
``ManualClock`` and both implementations agree. The counts are exact up to a window's
``cap``; past it a count stays at ``cap`` (the newest ``cap`` occurrences are kept), which
bounds the memory a flood can take and never under-reports a threshold below the cap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")
MAX_SUBJECT = 512
MAX_MEMBER = 128
MAX_FLAG_VALUE = 1024
DEFAULT_CAP = 10_000
MICROSECONDS = 1_000_000


def _check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise ValueError("a window or flag name is 1..63 of a-z, 0-9, '.', '-'")


@dataclass(frozen=True, slots=True)
class Window:
    """A sliding window: an occurrence counts while less than ``length`` has passed."""

    name: str
    length: timedelta
    cap: int = DEFAULT_CAP
    """The most occurrences kept per subject: counts are exact up to it and stay there."""

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.length < timedelta(microseconds=1):
            raise ValueError("a window lasts at least a microsecond")
        if self.cap < 1:
            raise ValueError("a window keeps at least one occurrence")

    @property
    def micros(self) -> int:
        return self.length // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Flag:
    """A named flag, set per subject with a value and an optional time to live."""

    name: str

    def __post_init__(self) -> None:
        _check_name(self.name)


def check_subject(subject: str) -> None:
    """Subjects are ids and addresses: never empty, never unbounded."""
    if not subject or len(subject) > MAX_SUBJECT:
        raise ValueError(f"a subject is 1..{MAX_SUBJECT} characters")


MAX_TIMES = 100_000


def check_times(times: int) -> None:
    if not 1 <= times <= MAX_TIMES:
        raise ValueError(f"a hit counts 1..{MAX_TIMES} occurrences")


def check_member(member: str) -> None:
    """Members are ids and pseudonyms: never empty, never unbounded."""
    if not member or len(member) > MAX_MEMBER:
        raise ValueError(f"a member is 1..{MAX_MEMBER} characters")


def check_flag_value(value: str, ttl: timedelta | None) -> None:
    if len(value) > MAX_FLAG_VALUE:
        raise ValueError(f"a flag's value is at most {MAX_FLAG_VALUE} characters")
    if ttl is not None and ttl < timedelta(microseconds=1):
        raise ValueError("a flag's time to live is positive (None: until cleared)")


def micros(timestamp: float) -> int:
    """A clock reading in whole microseconds: exact in a double (a Redis score, a Lua
    number) until the year 2255, so both implementations compare the same integers."""
    return round(timestamp * MICROSECONDS)


class Counters(Protocol):
    """Shared counters and flags. Every method may raise ``CountersUnavailableError``; none
    ever answers as if nothing had been counted or flagged when it could not look."""

    def hit(self, window: Window, subject: str, times: int = 1) -> int:
        """Count one occurrence (or ``times``) of ``subject`` now and return the count in
        the window that includes it, in one atomic step: of N hits at the same moment, from
        any threads or processes, each sees a different count, 1..N (up to ``cap``), so a
        threshold check on the returned value lets exactly the first ones through."""
        ...

    def distinct(self, window: Window, subject: str, member: str) -> int:
        """Note ``member`` (a buyer's pseudonym, an order id) for ``subject`` now and return
        how many distinct members were noted in the window, this one included, in one
        atomic step. A member noted again counts once, from its latest noting; past the cap
        the least recently noted are forgotten. ``count`` reads the same number without
        noting anything. A window is used for ``hit`` or for ``distinct``, never both."""
        ...

    def count(self, window: Window, subject: str) -> int:
        """The occurrences (or distinct members) of ``subject`` in the window now (0 if
        none)."""
        ...

    def reset(self, window: Window, subject: str) -> None:
        """Forget every occurrence of ``subject`` in this window."""
        ...

    def set_flag(self, flag: Flag, subject: str, value: str, *,
                 ttl: timedelta | None) -> None:
        """Set (or replace) the flag for ``subject``; it reads as unset once ``ttl`` has
        passed on the clock (``None``: until cleared)."""
        ...

    def flag(self, flag: Flag, subject: str) -> str | None:
        """The flag's value for ``subject``, or None if it is unset or has expired."""
        ...

    def clear_flag(self, flag: Flag, subject: str) -> None:
        ...

    def close(self) -> None:
        """Release connections (the runtime closes its counters with the store)."""
        ...
