"""Shared plumbing for the benchmarks: scratch databases, fresh instances, a TLS server in a
thread, logging in for real, and the result line.

Nothing here is part of the product; the benchmarks only drive its public pieces
(bootstrap, services, build_server, the CLI).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sellervault import bootstrap
from sellervault.config import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for tests/
from tests.support import (
    ADMIN_EMAIL,
    ADMIN_NAME,
    ADMIN_PASSWORD,
    Server,
    forget_redis_keys,
    free_socket,
    run_in_thread,
    scratch_postgres,
    settings_for,
    start_server,
)

__all__ = ["ADMIN_EMAIL", "ADMIN_PASSWORD", "Server", "forget_redis_keys", "free_socket",
           "running_vault", "serve_in_thread"]

POSTGRES_ADMIN_URL = os.environ.get(
    "SV_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def clean_environment() -> None:
    """Settings come only from what the benchmark passes, never from the caller's shell."""
    for name in list(os.environ):
        if name.startswith("SELLERVAULT_"):
            del os.environ[name]


@contextmanager
def scratch_database(kind: str, directory: Path, label: str) -> Iterator[str]:
    """A database nobody else uses: a new SQLite file, or a scratch PostgreSQL database."""
    if kind == "sqlite":
        directory.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{directory / f'{label}.db'}"
        return
    if kind != "postgresql":
        raise ValueError(f"unknown database kind {kind!r}")
    with scratch_postgres(POSTGRES_ADMIN_URL, f"sv_bench_{label}") as url:
        yield url


def new_instance(data_dir: Path, database_url: str) -> tuple[Settings, bootstrap.InitResult]:
    """``sellervault init`` in a fresh data directory (root key, certificate, schema, admin)."""
    settings = settings_for(data_dir, database_url)
    result = bootstrap.init(settings, admin_email=ADMIN_EMAIL, admin_name=ADMIN_NAME,
                            admin_password=ADMIN_PASSWORD)
    return settings, result


# -- a real TLS server on loopback: the test suite's own helpers -----------------------------

serve_in_thread = run_in_thread  # any uvicorn server (the bare baseline too) in a thread
running_vault = start_server  # SellerVault itself, TLS only, with real log-in helpers


# -- statistics and output ----------------------------------------------------------------

def time_gets(client: Any, paths: Sequence[str], count: int) -> list[float]:
    """``count`` GETs of ``paths`` in turn on one keep-alive ``httpx`` client, each timed on
    the client (seconds); every one must answer 200."""
    times = []
    for n in range(count):
        started = time.perf_counter()
        response = client.get(paths[n % len(paths)])
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """min..max, for the human-readable lines."""
    return f"{min(values):.3g}..{max(values):.3g}"


def emit(result: dict[str, Any]) -> None:
    """The machine-readable result: always the last line of output."""
    print(json.dumps(result), flush=True)
