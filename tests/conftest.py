"""Shared fixtures: real SQLite files, a real PostgreSQL database, a real TLS server.

Every test that touches a database runs twice, once on SQLite and once on PostgreSQL; each
PostgreSQL database is created for its test (or test module) and dropped after it. Without
a reachable PostgreSQL the PostgreSQL half is skipped locally, and fails when ``CI`` is set,
so CI always runs both.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from sellervault import bootstrap
from sellervault.config import Settings, load_settings
from sellervault.runtime import Runtime
from tests.support import ADMIN_EMAIL, ADMIN_NAME, ADMIN_PASSWORD, Server, start_server

POSTGRES_ADMIN_URL = os.environ.get(
    "SV_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = bool(os.environ.get("CI"))
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def missing_service(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI must run every test)")
    pytest.skip(reason)


DATABASES = ["sqlite", "postgresql"]


@contextmanager
def fresh_database(kind: str, directory: Path) -> Iterator[str]:
    """A database nobody else uses: a new SQLite file, or a new PostgreSQL database that is
    dropped afterwards (so runs and tests never see each other's rows)."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'data' / 'sellervault.db'}"
        return
    name = f"sv_test_{os.getpid()}_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any failure means the service is unusable
        admin.dispose()
        missing_service(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: "
                        f"{type(exc).__name__}")
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def settings_for(directory: Path, database_url: str) -> Settings:
    overrides: dict[str, object] = {"data_dir": directory / "data"}
    if not database_url.startswith("sqlite"):
        overrides["database_url"] = database_url
    return load_settings(**overrides)


def init_instance(settings: Settings) -> bootstrap.InitResult:
    return bootstrap.init(settings, admin_email=ADMIN_EMAIL, admin_name=ADMIN_NAME,
                          admin_password=ADMIN_PASSWORD)


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
    return settings_for(tmp_path, database_url)


@pytest.fixture
def initialized(settings: Settings) -> bootstrap.InitResult:
    return init_instance(settings)


@pytest.fixture
def runtime(settings: Settings, initialized: bootstrap.InitResult) -> Iterator[Runtime]:
    rt = bootstrap.open_runtime(settings)
    yield rt
    rt.close()


# -- one instance per test module, behind a real TLS server --------------------------------

@pytest.fixture(scope="module", params=DATABASES)
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("server")
    with fresh_database(request.param, directory) as url:
        settings = settings_for(directory, url)
        initialized = init_instance(settings)
        rt = bootstrap.open_runtime(settings)
        try:
            with start_server(rt, initialized) as running:
                yield running
        finally:
            rt.close()


@pytest.fixture(scope="session")
def order_examples() -> list[dict[str, object]]:
    """The marketplace's own SP-API example orders (fake sample data)."""
    import json

    path = SHARED_DATA / "sp-api-order-examples.json"
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
