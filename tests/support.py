"""Test helpers: a real TLS server on loopback, and API clients that log in for real."""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pyotp
import redis
import uvicorn
from sqlalchemy import create_engine, select, text

from sellervault import bootstrap
from sellervault.access.roles import Grant, Principal, Role
from sellervault.accounts import enrolment
from sellervault.accounts import service as accounts
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel
from sellervault.clock import Clock, ManualClock
from sellervault.config import Settings, load_settings
from sellervault.jobs.registry import JOBS, Registry
from sellervault.runtime import Runtime
from sellervault.web.server import build_server

T = TypeVar("T")

ADMIN_EMAIL = "alice.admin@example.test"
ADMIN_NAME = "Alice Admin"
ADMIN_PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a much longer passphrase 42"


def totp_code(secret: str, clock: Clock, offset_steps: int = 0) -> str:
    """The code for ``clock``'s time step (+ ``offset_steps``): the server's clock, which is
    a ``ManualClock`` in tests, not the wall clock."""
    return pyotp.TOTP(secret).at(clock.timestamp() + 30 * offset_steps)


@dataclass(frozen=True)
class Person:
    """A person who has set their own password and can log in."""

    id: str
    email: str
    name: str
    password: str
    totp_secret: str
    recovery_codes: tuple[str, ...] = ()


def system_auditor(rt: Runtime, source_ip: str = "198.51.100.7") -> Auditor:
    return Auditor(rt.audit, Actor(Channel.API, source_ip=source_ip))


def admin_of(initialized: bootstrap.InitResult) -> Principal:
    return Principal(initialized.admin_id, "person", (Grant(Role.ADMIN, "*"),))


def make_person(rt: Runtime, creator: Principal, *, email: str, name: str,
                grants: list[Grant], password: str = NEW_PASSWORD) -> Person:
    """A person created by ``creator`` who has enrolled (chosen ``password``, set up and
    proved their authenticator), through the service functions: the one place tests do
    this, so the way a person takes over an account changes here only."""
    created = accounts.create_person(rt, system_auditor(rt), creator, email=email, name=name,
                                     grants=grants)
    secret = enrolment.start(rt, system_auditor(rt), created.enrolment_token)
    codes = enrolment.finish(rt, system_auditor(rt), created.enrolment_token, password,
                             totp_code(secret, rt.clock))
    if isinstance(rt.clock, ManualClock):
        rt.clock.advance(30)  # the step is used: a login next gets a fresh one
    return Person(created.id, email, name, password, secret, tuple(codes))


@dataclass
class Server:
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
                            headers=headers, timeout=30)

    def next_totp(self, secret: str) -> str:
        """A code for a step not used yet: each use consumes its step (replays fail). Uses
        the current step, then the next; after that it moves the server's clock on a step
        (tests run on a ``ManualClock``: nobody waits 30 seconds; a benchmark's server runs
        on the system clock, and waits)."""
        clock = self.runtime.clock
        while True:
            current = int(clock.timestamp()) // 30
            step = max(self._last_step.get(secret, current - 1) + 1, current)
            if step <= current + 1:
                break
            if isinstance(clock, ManualClock):
                clock.advance(30)
            else:
                time.sleep(30 - clock.timestamp() % 30 + 0.2)
        self._last_step[secret] = step
        return pyotp.TOTP(secret).at(step * 30)

    def login(self, email: str, password: str, secret: str) -> str:
        with self.client() as client:
            response = client.post("/session", json={"email": email, "password": password,
                                                     "totp": self.next_totp(secret)})
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    def admin_token(self) -> str:
        return self.login(ADMIN_EMAIL, ADMIN_PASSWORD, self.admin_totp_secret)

    def create_service(self, admin_token: str, name: str, grants: list[dict[str, str]]) -> str:
        with self.client(admin_token) as client:
            response = client.post("/accounts", json={"kind": "service", "name": name,
                                                      "grants": grants})
        assert response.status_code == 201, response.text
        key: str = response.json()["api_key"]
        return key

    def create_person(self, admin_token: str, email: str, name: str,
                      grants: list[dict[str, str]]) -> tuple[str, dict[str, Any]]:
        """Create a person, enrol them (their own password and authenticator), log in;
        returns (token, created), ``created`` with their ``totp_secret`` and
        ``recovery_codes`` added."""
        with self.client(admin_token) as client:
            response = client.post("/accounts", json={"kind": "person", "email": email,
                                                      "name": name, "grants": grants})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        with self.client() as client:
            started = client.post("/enrolment/start", json={"token": created["enrolment_token"]})
            assert started.status_code == 200, started.text
            secret = started.json()["totp_secret"]
            finished = client.post("/enrolment/finish", json={
                "token": created["enrolment_token"], "new_password": NEW_PASSWORD,
                "totp": self.next_totp(secret)})
        assert finished.status_code == 200, finished.text
        created.update(totp_secret=secret, recovery_codes=finished.json()["recovery_codes"])
        return self.login(email, NEW_PASSWORD, secret), created


    def create_officer(self, admin_token: str, name: str) -> str:
        """A security officer (a person: no service may be one), enrolled and logged in;
        their session token."""
        email = name.lower().replace(" ", ".") + "@example.test"
        token, _ = self.create_person(admin_token, email, name.title(),
                                      [{"role": "security-officer", "tenant": "*"}])
        return token


class PostgresUnavailableError(Exception):
    """The PostgreSQL server could not give us a scratch database."""


@contextmanager
def scratch_postgres(admin_url: str, prefix: str) -> Iterator[str]:
    """A new PostgreSQL database nobody else uses, dropped afterwards (so runs and tests
    never see each other's rows)."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(6)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any failure means the service is unusable
        admin.dispose()
        raise PostgresUnavailableError(
            f"PostgreSQL is not reachable at {admin_url}: {type(exc).__name__}") from None
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    """A port nobody listens on now (for a server in another process to bind)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def serve_process(command: list[str], data_dir: Path, ca_file: Path,
                  environment: dict[str, str]) -> Iterator[str]:
    """A real ``sellervault serve`` in a process of its own, with ``environment`` (and no
    ``SELLERVAULT_*`` of the caller's); its base URL once it answers over TLS."""
    port = free_port()
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("SELLERVAULT_")} | environment
    process = subprocess.Popen([*command, "serve", "--data-dir", str(data_dir),
                                "--host", "127.0.0.1", "--port", str(port)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    base_url = f"https://127.0.0.1:{port}"
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base_url}/api/v1/health", verify=context)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        process.communicate(timeout=30)


def forget_redis_keys(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` (one test's namespace) from the test Redis."""
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)


def settings_for(data_dir: Path, database_url: str) -> Settings:
    """Settings for one instance: its data directory, and the database unless SQLite."""
    overrides: dict[str, object] = {"data_dir": data_dir}
    if not database_url.startswith("sqlite"):
        overrides["database_url"] = database_url
    return load_settings(**overrides)


def free_socket() -> socket.socket:
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY only on sockets that say they
    # are TCP, and without it every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def run_in_thread(server: uvicorn.Server, sock: socket.socket) -> Iterator[None]:
    """Run a uvicorn server on ``sock`` in a daemon thread until the block ends."""
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextmanager
def start_server(runtime: Runtime, initialized: bootstrap.InitResult,
                 jobs: Registry = JOBS) -> Iterator[Server]:
    """SellerVault itself, built by the product's ``build_server`` (TLS only), on loopback,
    running ``jobs`` as ``serve`` does."""
    sock = free_socket()
    port = sock.getsockname()[1]
    with run_in_thread(build_server(runtime, "127.0.0.1", port, jobs), sock):
        yield Server(f"https://127.0.0.1:{port}", initialized.certificate, runtime,
                     initialized.totp_secret)


def in_event_loop(runtime: Runtime, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work()`` in a fresh event loop with the runtime's event-loop connections open
    (PostgreSQL), as they are inside a started server; closed again afterwards."""

    async def run() -> T:
        await runtime.store.open_async(2)
        try:
            return await work()
        finally:
            await runtime.store.close_async()

    return anyio.run(run)


def block_event_writes(runtime: Runtime) -> None:
    """Make the security log unwritable for real: the database refuses new events."""
    with runtime.store.engine.begin() as connection:
        if runtime.store.dialect == "sqlite":
            connection.execute(text(
                "CREATE TRIGGER block_events BEFORE INSERT ON security_events "
                "BEGIN SELECT RAISE(ABORT, 'log disk full'); END"))
        else:
            connection.execute(text(
                "CREATE FUNCTION block_events() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'log disk full'; END $$ LANGUAGE plpgsql"))
            connection.execute(text(
                "CREATE TRIGGER block_events BEFORE INSERT ON security_events "
                "FOR EACH ROW EXECUTE FUNCTION block_events()"))


def unblock_event_writes(runtime: Runtime) -> None:
    with runtime.store.engine.begin() as connection:
        connection.execute(text("DROP TRIGGER block_events" + (
            "" if runtime.store.dialect == "sqlite" else " ON security_events")))


def last_request_event(server: Server) -> Any:
    """The newest event a request or command wrote: the detectors' own events (alerts, an
    account a canary locked), written afterwards on the system channel, are skipped, and so
    is a ``canaries:touched`` the request wrote after its own (a search by postal code may
    find a canary: canaries live in their tenant's postal areas)."""
    from sellervault.audit.models import EventRow

    with server.runtime.store.transaction() as session:
        event = session.scalars(select(EventRow).where(
            EventRow.channel != "system", EventRow.action != "canaries:touched")
            .order_by(EventRow.seq.desc()).limit(1)).one()
        session.expunge(event)
        return event


_QUEUED_BEHIND = text(
    "WITH RECURSIVE behind(pid) AS ("
    " SELECT pid FROM pg_stat_activity WHERE :holder = ANY(pg_blocking_pids(pid))"
    " UNION SELECT a.pid FROM pg_stat_activity a JOIN behind b"
    " ON b.pid = ANY(pg_blocking_pids(a.pid))) SELECT count(*) FROM behind")
"""The backends queued behind ``holder``: blocked by it, or by one queued behind it (the
second transaction for a row waits on the first one's place in the queue, not on the
holder)."""


@contextmanager
def account_row_held(rt: Runtime, account_id: str) -> Iterator[Callable[[int], None]]:
    """Hold the account's row lock (PostgreSQL: the caller skips SQLite) until the block
    ends; yields a function that waits until that many other backends are queued behind it
    (blocked by the holder: any lock wait of the database would also count the server's own
    jobs and event writers, and let a request go before the one it must follow was queued).
    For races: line requests up on the row, then let them go at once."""
    with rt.store.engine.connect() as holder, rt.store.engine.connect() as watcher:
        transaction = holder.begin()
        holder.execute(text("SELECT id FROM accounts WHERE id = :a FOR UPDATE"),
                       {"a": account_id})
        holder_pid = holder.execute(text("SELECT pg_backend_pid()")).scalar()

        def queued(count: int) -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                waiting = watcher.execute(_QUEUED_BEHIND, {"holder": holder_pid}).scalar()
                watcher.commit()
                if waiting == count:
                    return
                time.sleep(0.02)
            raise AssertionError(f"{count} transactions never queued on the account's row")

        try:
            yield queued
        finally:
            transaction.rollback()
