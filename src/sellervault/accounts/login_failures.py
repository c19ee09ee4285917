"""Failed sign-ins per source address, in the shared counters: 100 a day (a sliding 24 hours),
then every sign-in from that address is refused with 429 until its oldest failure is a day
old (PARAMETERS.md, "per-address login throttle"). One count for every server process when
Redis is configured.

This is what stops password spraying: one guess at each of many accounts never locks any of
them (``accounts.lockout`` counts per account), but every guess counts against the address.
A failure for an email no account has counts here too. A success counts nothing.

The limit is checked before the attempt and the failure counted after it, so requests of one
address that are checked at the same moment can pass together: at most the requests one
address has in flight (32 connections, ``web.limits``) beyond the hundred. That bound, unlike
the account's (which is exact), is accepted: an address is a coarse identity (a whole office
behind one NAT is one), and counting every attempt up front would lock such an office out
with its own successful sign-ins.

The counters unreachable: the sign-in is refused (503 ``counters_unavailable``) rather than
let through unthrottled; its event is recorded first.
"""

from __future__ import annotations

from datetime import timedelta

from sellervault.accounts.errors import LoginThrottledError
from sellervault.counters.errors import CountersUnavailableError
from sellervault.counters.interface import Counters, Window

FAILED_LOGINS_PER_ADDRESS = Window("login-failures-address", timedelta(days=1), cap=1000)
"""The cap (1000) is far above the limit that reads it."""
LIMIT_PER_ADDRESS = 100


def refusal_for(counters: Counters,
                source_ip: str | None) -> LoginThrottledError | CountersUnavailableError | None:
    """Why a sign-in from ``source_ip`` is refused before anything else, if it is."""
    if source_ip is None:
        return None
    try:
        failures = counters.count(FAILED_LOGINS_PER_ADDRESS, source_ip)
    except CountersUnavailableError as exc:
        return exc
    return LoginThrottledError() if failures >= LIMIT_PER_ADDRESS else None


def count_failure(counters: Counters, source_ip: str | None) -> CountersUnavailableError | None:
    """Count one failed sign-in from ``source_ip``; the error if the counters could not be
    reached, so the caller records the attempt before refusing it (503)."""
    if source_ip is None:
        return None
    try:
        counters.hit(FAILED_LOGINS_PER_ADDRESS, source_ip)
    except CountersUnavailableError as exc:
        return exc
    return None
