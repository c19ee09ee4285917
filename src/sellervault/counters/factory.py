"""Which counters a process uses: Redis when ``SELLERVAULT_REDIS_URL`` is set, else in-process.

Every process of one vault derives the same Redis namespace from the vault's
``shared-counters`` system key (in the database, wrapped by the root key), so they share
their counts, and two vaults sharing a Redis never do: neither the namespace nor a subject's
key can be told without that key.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError, OperationalError

from sellervault.clock import Clock
from sellervault.config import Settings
from sellervault.counters.interface import Counters
from sellervault.counters.local import LocalCounters
from sellervault.crypto.keyring import Keyring
from sellervault.store.engine import Store

COUNTERS_KEY = "shared-counters"


def open_counters(settings: Settings, clock: Clock, store: Store, keyring: Keyring) -> Counters:
    if settings.redis_url is None:
        return LocalCounters(clock)
    # Imported here: the Redis client is a tenth of a second of every CLI command's start,
    # and only a vault configured with Redis uses it.
    from sellervault.counters.redis import RedisCounters

    return RedisCounters.from_url(settings.redis_url.get_secret_value(), clock,
                                  _counters_key(store, keyring))


def _counters_key(store: Store, keyring: Keyring) -> bytes:
    """The vault's counters key, made by the first process that needs it. Two processes
    starting together may both try to make it: the loser (a duplicate key, or on SQLite a
    write from a stale snapshot) reads the winner's."""
    try:
        with store.transaction() as session:
            return keyring.system_key(session, COUNTERS_KEY)
    except (IntegrityError, OperationalError):
        pass
    with store.transaction() as session:
        return keyring.system_key(session, COUNTERS_KEY)
