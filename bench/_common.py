"""Shared plumbing for the benchmarks: scratch databases, fresh instances, a TLS server in a
thread, logging in for real, and the result line.

Nothing here is part of the product; the benchmarks only drive its public pieces
(bootstrap, services, build_server, the CLI).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyotp
import uvicorn
from sqlalchemy import create_engine, text

from sellervault import bootstrap
from sellervault.config import Settings, load_settings
from sellervault.runtime import Runtime
from sellervault.web.server import build_server

POSTGRES_ADMIN_URL = os.environ.get(
    "SV_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
ADMIN_EMAIL = "bench.admin@example.test"
ADMIN_NAME = "Bench Admin"
ADMIN_PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a much longer passphrase 42"


def clean_environment() -> None:
    """Settings come only from what the benchmark passes, never from the caller's shell."""
    for name in list(os.environ):
        if name.startswith("SELLERVAULT_"):
            del os.environ[name]


@contextmanager
def scratch_database(kind: str, directory: Path, label: str) -> Iterator[str]:
    """A database nobody else uses: a new SQLite file, or a new PostgreSQL database dropped
    afterwards."""
    if kind == "sqlite":
        directory.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{directory / f'{label}.db'}"
        return
    if kind != "postgresql":
        raise ValueError(f"unknown database kind {kind!r}")
    name = f"sv_bench_{label}_{os.getpid()}_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def settings_for(data_dir: Path, database_url: str) -> Settings:
    overrides: dict[str, Any] = {"data_dir": data_dir}
    if not database_url.startswith("sqlite"):
        overrides["database_url"] = database_url
    return load_settings(**overrides)


def new_instance(data_dir: Path, database_url: str) -> tuple[Settings, bootstrap.InitResult]:
    """``sellervault init`` in a fresh data directory (root key, certificate, schema, admin)."""
    settings = settings_for(data_dir, database_url)
    result = bootstrap.init(settings, admin_email=ADMIN_EMAIL, admin_name=ADMIN_NAME,
                            admin_password=ADMIN_PASSWORD)
    return settings, result


# -- a real TLS server on loopback ---------------------------------------------------------

def free_socket() -> socket.socket:
    # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto says
    # TCP; with the default proto 0 every response waits ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve_in_thread(server: uvicorn.Server, sock: socket.socket) -> Iterator[None]:
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@dataclass
class RunningVault:
    """SellerVault served by the product's own ``build_server`` (TLS-only config)."""

    base_url: str
    ca_file: Path
    runtime: Runtime
    admin_totp_secret: str
    _last_step: dict[str, int] = field(default_factory=dict)

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.base_url + "/api/v1",
                            verify=ssl.create_default_context(cafile=str(self.ca_file)),
                            headers=headers, timeout=60)

    def next_totp(self, secret: str) -> str:
        """A code for a step not used yet (each use consumes its step)."""
        while True:
            current = int(time.time()) // 30
            step = max(self._last_step.get(secret, current - 1) + 1, current)
            if step <= current + 1:
                break
            time.sleep(30 - time.time() % 30 + 0.2)
        self._last_step[secret] = step
        return pyotp.TOTP(secret).at(step * 30)

    def login(self, email: str, password: str, secret: str) -> str:
        with self.client() as client:
            response = client.post("/session", json={"email": email, "password": password,
                                                     "totp": self.next_totp(secret)})
        response.raise_for_status()
        token: str = response.json()["token"]
        return token

    def admin_token(self) -> str:
        return self.login(ADMIN_EMAIL, ADMIN_PASSWORD, self.admin_totp_secret)

    def create_service(self, admin_token: str, name: str, grants: list[dict[str, str]]) -> str:
        with self.client(admin_token) as client:
            response = client.post("/accounts", json={"kind": "service", "name": name,
                                                      "grants": grants})
        response.raise_for_status()
        key: str = response.json()["api_key"]
        return key

    def create_person(self, admin_token: str, email: str, name: str,
                      grants: list[dict[str, str]]) -> str:
        """Create a person, replace the one-time password, log in; returns a session token."""
        with self.client(admin_token) as client:
            response = client.post("/accounts", json={"kind": "person", "email": email,
                                                      "name": name, "grants": grants})
        response.raise_for_status()
        created = response.json()
        with self.client() as client:
            changed = client.post("/password", json={
                "email": email, "current_password": created["one_time_password"],
                "totp": self.next_totp(created["totp_secret"]), "new_password": NEW_PASSWORD})
        changed.raise_for_status()
        return self.login(email, NEW_PASSWORD, created["totp_secret"])


@contextmanager
def running_vault(runtime: Runtime, initialized: bootstrap.InitResult) -> Iterator[RunningVault]:
    sock = free_socket()
    port = sock.getsockname()[1]
    server = build_server(runtime, "127.0.0.1", port)
    with serve_in_thread(server, sock):
        yield RunningVault(f"https://127.0.0.1:{port}", initialized.certificate, runtime,
                           initialized.totp_secret)


# -- statistics and output ----------------------------------------------------------------

def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """min..max, for the human-readable lines."""
    return f"{min(values):.3g}..{max(values):.3g}"


def emit(result: dict[str, Any]) -> None:
    """The machine-readable result: always the last line of output."""
    print(json.dumps(result), flush=True)
