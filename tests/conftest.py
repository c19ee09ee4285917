"""Shared fixtures: real SQLite files, a real PostgreSQL database, a real Redis, a real TLS
server.

Every test that touches a database runs twice, once on SQLite and once on PostgreSQL; each
PostgreSQL database is created for its test (or test module) and dropped after it. Without
a reachable PostgreSQL the PostgreSQL half is skipped locally, and fails when ``CI`` is set,
so CI always runs both. Redis is the same: tests that need it skip locally without it and
fail in CI; each uses keys of its own (a random counters key), deleted afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from argon2 import PasswordHasher
from sqlalchemy import Engine, MetaData, create_engine, make_url, text

from sellervault import bootstrap
from sellervault.accounts import passwords
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


# Passwords: Argon2id at the product's cost (RFC 9106: 64 MiB, 3 passes, ~0.1 s on every
# core) for each of the thousands of passwords the suite sets and checks was a third of
# `make test`'s CPU. As Django advises for test suites, the tests hash with the cheapest
# Argon2id instead (same code, same format, same checks); what depends on the cost itself
# (the profile, the timing equaliser) asks for ``production_passwords``. CLI and server
# processes the tests start hash at the product's cost.
TEST_PASSWORD_PROFILE = dataclasses.replace(passwords.PROFILE, time_cost=1, memory_cost=8,
                                            parallelism=1)
passwords._hasher = PasswordHasher.from_parameters(TEST_PASSWORD_PROFILE)


@pytest.fixture
def production_passwords() -> Iterator[None]:
    """The product's own Argon2id profile for this test (and a timing-equaliser hash made
    with it)."""
    cheap = passwords._hasher
    passwords._hasher = PasswordHasher.from_parameters(passwords.PROFILE)
    passwords._dummy_hash.cache_clear()
    try:
        yield
    finally:
        passwords._hasher = cheap
        passwords._dummy_hash.cache_clear()


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


@pytest.fixture(scope="session")
def epoch() -> datetime:
    """When this worker began: every test's clock starts here, and so do the instance
    templates' rows, so a copied instance looks as if ``init`` had just run."""
    return datetime.now(UTC)


@pytest.fixture
def clock(epoch: datetime) -> ManualClock:
    """The test's time: it stands still until the test moves it (``advance``)."""
    return ManualClock(epoch)


@dataclass(frozen=True)
class InstanceTemplate:
    """An instance initialised once per worker: its data directory, its database's URL and
    what ``init`` returned. Copying it costs a fraction of ``init`` (the administrator's
    Argon2id hash, the migrations, a certificate)."""

    data_dir: Path
    database_url: str
    result: bootstrap.InitResult


@pytest.fixture(scope="session")
def instance_templates(tmp_path_factory: pytest.TempPathFactory, epoch: datetime,
                       ) -> Iterator[Callable[[str], InstanceTemplate]]:
    made: dict[str, InstanceTemplate] = {}
    with ExitStack() as stack:
        def template(kind: str) -> InstanceTemplate:
            if kind not in made:
                directory = tmp_path_factory.mktemp(f"template-{kind}")
                url = stack.enter_context(fresh_database(kind, directory))
                result = init_instance(settings_for(directory / "data", url), ManualClock(epoch))
                made[kind] = InstanceTemplate(directory / "data", url, result)
            return made[kind]

        yield template


def copy_instance(template: InstanceTemplate, settings: Settings) -> bootstrap.InitResult:
    """Make ``settings``' (still empty) data directory and database a copy of ``template``:
    the same root key, certificate, schema and administrator, as if ``init`` had run there
    when the template was made."""
    shutil.copytree(template.data_dir, settings.data_dir, dirs_exist_ok=True)
    if settings.database_url is not None:
        name = make_url(settings.database_url.get_secret_value()).database
        source = make_url(template.database_url).database
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE "{name}"'))
                connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{source}"'))
        finally:
            admin.dispose()
    return dataclasses.replace(template.result, certificate=settings.certificate_file)


@pytest.fixture
def initialized(settings: Settings,
                instance_templates: Callable[[str], InstanceTemplate]) -> bootstrap.InitResult:
    """An initialised instance: a copy of the worker's template, dated at ``epoch`` where
    the test's clock starts."""
    kind = "sqlite" if settings.database_url is None else "postgresql"
    return copy_instance(instance_templates(kind), settings)


@pytest.fixture
def runtime(settings: Settings, initialized: bootstrap.InitResult,
            clock: ManualClock) -> Iterator[Runtime]:
    rt = bootstrap.open_runtime(settings, clock)
    yield rt
    rt.close()


# -- one instance per test module, behind a real TLS server --------------------------------

@pytest.fixture(scope="module", params=DATABASES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           epoch: datetime, instance_templates: Callable[[str], InstanceTemplate],
           ) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("server")
    with fresh_database(request.param, directory) as url:
        settings = settings_for(directory / "data", url)
        clock = ManualClock(epoch)  # the module's time: moved forward by tests, never waited for
        initialized = copy_instance(instance_templates(request.param), settings)
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
