"""Failed logins in the shared counters: per account and per source address, so every
server process of a vault sees one count (the account lockout and the per-address limit of
the next issue read these; nothing acts on them yet).

PARAMETERS: an account's failures are forgotten 12 hours after each one (so five failures
lock it only within 12 hours); an address's are counted per day (a sliding 24 hours). A
failure for an email no account has counts against the address only. A success does not
reset either count. ``accounts.failed_logins`` in the database still counts too.
"""

from __future__ import annotations

from datetime import timedelta

from sellervault.counters.errors import CountersUnavailableError
from sellervault.counters.interface import Counters, Window

FAILED_LOGINS_PER_ACCOUNT = Window("login-failures-account", timedelta(hours=12), cap=1000)
FAILED_LOGINS_PER_ADDRESS = Window("login-failures-address", timedelta(days=1), cap=1000)
"""The caps (1000) are far above any threshold that will read them (5, 10 and 100)."""


def count_failure(counters: Counters, account_id: str | None,
                  source_ip: str | None) -> CountersUnavailableError | None:
    """Count one failed login; the error if the counters could not be reached, so the caller
    records the attempt before refusing it (503) instead of losing it with a rollback."""
    try:
        if account_id is not None:
            counters.hit(FAILED_LOGINS_PER_ACCOUNT, account_id)
        if source_ip is not None:
            counters.hit(FAILED_LOGINS_PER_ADDRESS, source_ip)
    except CountersUnavailableError as exc:
        return exc
    return None
