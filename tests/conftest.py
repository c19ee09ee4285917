"""Shared fixtures: real SQLite files, a real PostgreSQL database, a real Redis, a real TLS
server.

Every test that touches a database runs twice, once on SQLite and once on PostgreSQL; each
PostgreSQL database is created for its test (or test module) and dropped after it. Without
a reachable PostgreSQL the PostgreSQL half is skipped locally, and fails when ``CI`` is set,
so CI always runs both. Redis is the same: tests that need it skip locally without it and
fail in CI; each uses keys of its own (a random counters key), deleted afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, MetaData

from sellervault import bootstrap
from sellervault.clock import SYSTEM_CLOCK, Clock, ManualClock
from sellervault.config import Settings
from sellervault.counters.redis import RedisCounters
from sellervault.runtime import Runtime
from sellervault.store.engine import make_engine
from tests.support import (
    ADMIN_EMAIL,
    ADMIN_NAME,
    ADMIN_PASSWORD,
    PostgresUnavailableError,
    Server,
    forget_redis_keys,
    scratch_postgres,
    settings_for,
    start_server,
)

POSTGRES_ADMIN_URL = os.environ.get(
    "SV_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("SV_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = bool(os.environ.get("CI"))
TEST_DATA = Path(__file__).resolve().parent / "data"  # copied in, with licence: data/README.md


def missing_service(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI must run every test)")
    pytest.skip(reason)


DATABASES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis's URL, once it has answered a PING."""
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2) as client:
            client.ping()
    except redis.RedisError as exc:
        missing_service(f"Redis is not reachable at {REDIS_URL}: {type(exc).__name__}")
    return REDIS_URL


@pytest.fixture
def redis_counters(redis_url: str) -> Iterator[Callable[..., RedisCounters]]:
    """Makes Redis counters on the test Redis: by default each with a counters key of its
    own (another vault); given the same ``secret``, another process of the same vault. Their
    keys are deleted after the test."""
    made: list[RedisCounters] = []

    def make(clock: Clock, secret: bytes | None = None) -> RedisCounters:
        counters = RedisCounters.from_url(redis_url, clock, secret or secrets.token_bytes(32))
        made.append(counters)
        return counters

    yield make
    for counters in made:
        forget_redis_keys(redis_url, counters.prefix)
        counters.close()


@contextmanager
def fresh_database(kind: str, directory: Path) -> Iterator[str]:
    """A database nobody else uses: a new SQLite file, or a scratch PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'data' / 'sellervault.db'}"
        return
    try:
        with scratch_postgres(POSTGRES_ADMIN_URL, "sv_test") as url:
            yield url
    except PostgresUnavailableError as exc:
        missing_service(str(exc))


@contextmanager
def engine_with_tables(kind: str, directory: Path, metadata: MetaData) -> Iterator[Engine]:
    """An engine on a fresh database holding the tables of ``metadata`` (for store tests
    that need tables of their own, not SellerVault's schema)."""
    (directory / "data").mkdir(exist_ok=True)
    with fresh_database(kind, directory) as url:
        engine = make_engine(url)
        metadata.create_all(engine)
        try:
            yield engine
        finally:
            engine.dispose()


def init_instance(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> bootstrap.InitResult:
    return bootstrap.init(settings, admin_email=ADMIN_EMAIL, admin_name=ADMIN_NAME,
                          admin_password=ADMIN_PASSWORD, clock=clock)


@pytest.fixture(autouse=True)
def _no_stray_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SELLERVAULT_"):
            monkeypatch.delenv(name)


# -- one instance per test: for tests that need a pristine data directory ------------------

@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return settings_for(tmp_path / "data", database_url)


@pytest.fixture
def clock() -> ManualClock:
    """The test's time: it stands still until the test moves it (``advance``)."""
    return ManualClock()


@pytest.fixture
def initialized(settings: Settings, clock: ManualClock) -> bootstrap.InitResult:
    return init_instance(settings, clock)


@pytest.fixture
def runtime(settings: Settings, initialized: bootstrap.InitResult,
            clock: ManualClock) -> Iterator[Runtime]:
    rt = bootstrap.open_runtime(settings, clock)
    yield rt
    rt.close()


# -- one instance per test module, behind a real TLS server --------------------------------

@pytest.fixture(scope="module", params=DATABASES)
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("server")
    with fresh_database(request.param, directory) as url:
        settings = settings_for(directory / "data", url)
        clock = ManualClock()  # the module's time: moved forward by tests, never waited for
        initialized = init_instance(settings, clock)
        rt = bootstrap.open_runtime(settings, clock)
        try:
            with start_server(rt, initialized) as running:
                yield running
        finally:
            rt.close()


@pytest.fixture(scope="session")
def order_examples() -> list[dict[str, object]]:
    """The marketplace's own SP-API example orders (fake sample data)."""
    import json

    path = TEST_DATA / "sp-api-order-examples.json"
    document = json.loads(path.read_text())
    found: dict[str, dict[str, object]] = {}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "AmazonOrderId" in node and "PurchaseDate" in node:
                found.setdefault(str(node["AmazonOrderId"]), node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return list(found.values())


# The longest test files first: with ``make test``'s workers taking whole files in collection
# order (``--dist loadfile``), a long file collected last would finish alone on one worker
# while the others idle.
LONGEST_FIRST = ("tests.web.test_openapi_fuzz", "tests.web.test_role_matrix")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        module = getattr(item, "module", None)
        name = module.__name__ if module is not None else ""
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # (stable: every file's tests stay together and in order)
