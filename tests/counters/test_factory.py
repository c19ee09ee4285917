"""Which counters a runtime gets (``counters/factory.py``, ``Runtime.open``), on SQLite and
PostgreSQL:

- Without ``SELLERVAULT_REDIS_URL``: in-process counters, on the runtime's clock.
- With it: Redis counters named by the vault's ``shared-counters`` key, so two runtimes of one
  vault (one database) share their counts, and two vaults on one Redis never do.
- Processes starting at once all end up with the one key the first of them made.
- ``Runtime.close`` closes the counters' connections.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import redis
from pydantic import SecretStr
from sqlalchemy import func, select

from sellervault import bootstrap
from sellervault.clock import ManualClock
from sellervault.config import Settings
from sellervault.counters.factory import COUNTERS_KEY, open_counters
from sellervault.counters.interface import Window
from sellervault.counters.local import LocalCounters
from sellervault.counters.redis import RedisCounters
from sellervault.crypto.keyring import Keyring
from sellervault.crypto.models import SystemKey
from sellervault.crypto.provider import LocalKeyProvider
from sellervault.runtime import Runtime
from sellervault.store.engine import Store
from tests.conftest import init_instance
from tests.support import forget_redis_keys, settings_for

FAILURES = Window("test-failures", timedelta(hours=1))


def with_redis(settings: Settings, url: str) -> Settings:
    return settings.model_copy(update={"redis_url": SecretStr(url)})


def test_without_redis_the_counters_are_in_process_on_the_runtimes_clock(
        settings: Settings, initialized: bootstrap.InitResult) -> None:
    clock = ManualClock()
    runtime = Runtime.open(settings, clock)
    try:
        assert isinstance(runtime.counters, LocalCounters)
        runtime.counters.hit(FAILURES, "acc_1")
        clock.advance(timedelta(hours=1))
        assert runtime.counters.count(FAILURES, "acc_1") == 0
    finally:
        runtime.close()


def test_two_runtimes_of_one_vault_share_their_counts_on_redis(
        settings: Settings, initialized: bootstrap.InitResult, redis_url: str) -> None:
    first = Runtime.open(with_redis(settings, redis_url))
    second = Runtime.open(with_redis(settings, redis_url))
    try:
        assert isinstance(first.counters, RedisCounters)
        assert isinstance(second.counters, RedisCounters)
        assert first.counters.prefix == second.counters.prefix
        first.counters.hit(FAILURES, "acc_1")
        assert second.counters.hit(FAILURES, "acc_1") == 2
    finally:
        forget_redis_keys(redis_url, first.counters.prefix)
        first.close()
        second.close()


def test_two_vaults_on_one_redis_never_share(settings: Settings,
                                             initialized: bootstrap.InitResult,
                                             redis_url: str, tmp_path: Path) -> None:
    other_settings = settings_for(tmp_path / "other-vault",
                                  f"sqlite:///{tmp_path / 'other-vault' / 'sellervault.db'}")
    init_instance(other_settings)
    ours = Runtime.open(with_redis(settings, redis_url))
    theirs = Runtime.open(with_redis(other_settings, redis_url))
    try:
        assert ours.counters.prefix != theirs.counters.prefix  # type: ignore[attr-defined]
        ours.counters.hit(FAILURES, "acc_1")
        assert theirs.counters.count(FAILURES, "acc_1") == 0
    finally:
        for runtime in (ours, theirs):
            forget_redis_keys(redis_url, runtime.counters.prefix)  # type: ignore[attr-defined]
            runtime.close()


def test_processes_starting_at_once_share_the_key_the_first_one_made(
        settings: Settings, initialized: bootstrap.InitResult, redis_url: str) -> None:
    """Each thread is a process starting: a store and keyring of its own, no key yet."""
    starting = 6
    at_once = threading.Barrier(starting)
    stores = [Store.from_url(settings.effective_database_url()) for _ in range(starting)]

    def start(store: Store) -> RedisCounters:
        keyring = Keyring(LocalKeyProvider(settings.root_key_file, None), ManualClock())
        at_once.wait()
        counters = open_counters(with_redis(settings, redis_url), ManualClock(), store, keyring)
        assert isinstance(counters, RedisCounters)
        return counters

    try:
        with ThreadPoolExecutor(starting) as pool:
            started = list(pool.map(start, stores))
        assert len({counters.prefix for counters in started}) == 1
        with stores[0].transaction() as session:
            assert session.scalar(select(func.count()).select_from(SystemKey)
                                  .where(SystemKey.name == COUNTERS_KEY)) == 1
        for counters in started:
            counters.close()
    finally:
        for store in stores:
            store.dispose()


def test_close_closes_the_redis_connections(settings: Settings,
                                            initialized: bootstrap.InitResult,
                                            redis_url: str) -> None:
    runtime = Runtime.open(with_redis(settings, redis_url))
    counters = runtime.counters
    assert isinstance(counters, RedisCounters)
    counters.count(FAILURES, "acc_1")  # connects

    def connected() -> int:
        with redis.Redis.from_url(redis_url) as admin:
            return sum(client["name"] == counters.client_name
                       for client in admin.client_list())

    assert connected() == 1
    runtime.close()
    assert connected() == 0
