"""The shared counters seen from outside, through the HTTPS API:

- Two real ``sellervault serve`` processes on one PostgreSQL database and one Redis keep one
  count: failed logins sent to both at the same moment are all in the address's count, as
  read by a third runtime of the same vault, and exactly five of them were checked against
  the password before the account locked; the lock made through one process holds on the
  other, against the right password too; a logout and a disable made through one are
  refused by the other at its next request, and a kill switch within a second.
- The detectors of two processes count together: denials spread across both raise one
  alert (and one for their address), and a canary touched through one disables the account
  on the other.
- A failed login the counters cannot record is answered ``503 counters_unavailable`` with
  ``Retry-After``, and the security log holds its one event (denied, 503).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from sellervault import bootstrap
from sellervault.accounts.login_failures import FAILED_LOGINS_PER_ADDRESS
from sellervault.accounts.models import Account
from sellervault.audit.models import EventRow
from sellervault.config import Settings
from sellervault.counters.redis import RedisCounters
from sellervault.monitoring.models import AlertRow
from sellervault.records.models import Order
from sellervault.records.synthetic import synthetic_orders
from sellervault.runtime import Runtime
from tests.cli.helpers import COMMAND
from tests.conftest import fresh_database, init_instance
from tests.support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    forget_redis_keys,
    serve_process,
    settings_for,
    start_server,
)

WRONG = {"email": ADMIN_EMAIL, "password": "not the password at all", "totp": "000000"}


@pytest.fixture
def vault_on_postgres(tmp_path: Path) -> Iterator[tuple[Settings, bootstrap.InitResult]]:
    with fresh_database("postgresql", tmp_path) as url:
        settings = settings_for(tmp_path / "data", url)
        yield settings, init_instance(settings)


@pytest.mark.slow
def test_two_server_processes_keep_one_count(
        vault_on_postgres: tuple[Settings, bootstrap.InitResult], redis_url: str) -> None:
    settings, initialized = vault_on_postgres
    assert settings.database_url is not None
    environment = {"SELLERVAULT_DATABASE_URL": settings.database_url.get_secret_value(),
                   "SELLERVAULT_REDIS_URL": redis_url}
    context = ssl.create_default_context(cafile=str(initialized.certificate))

    def fail(base_url: str) -> int:
        response = httpx.post(f"{base_url}/api/v1/session", json=WRONG, verify=context,
                              timeout=30)
        return response.status_code

    with ExitStack() as servers:
        # Started together, as a fleet restarts: the first makes the vault's counters key.
        with ThreadPoolExecutor(2) as starting:
            started = [starting.submit(servers.enter_context, serve_process(
                COMMAND, settings.data_dir, initialized.certificate, environment))
                for _ in range(2)]
            base_urls = [future.result() for future in started]
        attempts = [base_urls[0]] * 3 + [base_urls[1]] * 4
        with ThreadPoolExecutor(len(attempts)) as at_once:
            statuses = list(at_once.map(fail, attempts))
        assert statuses == [401] * len(attempts)
        # Locked through both: the right password and code are refused by either process.
        right = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                 "totp": pyotp.TOTP(initialized.totp_secret).now()}
        for base_url in base_urls:
            refused = httpx.post(f"{base_url}/api/v1/session", json=right, verify=context,
                                 timeout=30)
            assert refused.status_code == 401

    reader = Runtime.open(settings.model_copy(update={"redis_url": SecretStr(redis_url)}))
    assert isinstance(reader.counters, RedisCounters)
    try:
        assert reader.counters.count(FAILED_LOGINS_PER_ADDRESS, "127.0.0.1") == 9
        with reader.store.engine.connect() as connection:
            assert connection.scalar(select(Account.failed_logins).where(
                Account.id == initialized.admin_id)) == 5
            reasons = list(connection.scalars(select(EventRow.reason).where(
                EventRow.action == "session:create")))
        assert sorted(reasons) == ["account_locked"] * 4 + ["invalid_credentials"] * 5
    finally:
        forget_redis_keys(redis_url, reader.counters.prefix)
        reader.close()


def test_a_failed_login_the_counters_cannot_record_is_a_503(
        runtime: Runtime, initialized: bootstrap.InitResult) -> None:
    unreachable = RedisCounters.from_url("redis://127.0.0.1:1/0", runtime.clock, b"k" * 32)
    rt = Runtime(runtime.settings, runtime.store, runtime.keyring, runtime.clock, unreachable)
    with start_server(rt, initialized) as server, server.client() as client:
        response = client.post("/session", json=WRONG)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "counters_unavailable"
    assert response.headers["retry-after"] == "5"
    with rt.store.engine.connect() as connection:
        events = list(connection.execute(select(EventRow).where(
            EventRow.action == "session:create")))
    assert [(e.outcome, e.status, e.reason, e.target_id) for e in events] == [
        ("denied", 503, "counters_unavailable", None)]  # refused before any attempt
    unreachable.close()


def _refused_within_a_second(call: Any, status: int = 401) -> float:
    """Poll ``call`` (a status code) until it answers ``status``; how long that took."""
    started = time.monotonic()
    while call() != status:
        assert time.monotonic() - started < 1.0, "still accepted a second later"
        time.sleep(0.02)
    return time.monotonic() - started


@dataclass
class Fleet:
    """Two ``serve`` processes of one vault, and an administrator's session on them."""

    first: str
    second: str
    admin: str
    context: ssl.SSLContext

    def client(self, base_url: str, token: str) -> httpx.Client:
        return httpx.Client(base_url=f"{base_url}/api/v1", verify=self.context, timeout=30,
                            headers={"Authorization": f"Bearer {token}"})


@contextmanager
def two_servers(vault: tuple[Settings, bootstrap.InitResult], redis_url: str
                ) -> Iterator[Fleet]:
    settings, initialized = vault
    assert settings.database_url is not None
    environment = {"SELLERVAULT_DATABASE_URL": settings.database_url.get_secret_value(),
                   "SELLERVAULT_REDIS_URL": redis_url}
    context = ssl.create_default_context(cafile=str(initialized.certificate))
    with ExitStack() as servers:
        first, second = (servers.enter_context(serve_process(
            COMMAND, settings.data_dir, initialized.certificate, environment))
            for _ in range(2))
        with httpx.Client(base_url=f"{first}/api/v1", verify=context, timeout=30) as anyone:
            signed_in = anyone.post("/session", json={
                "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                "totp": pyotp.TOTP(initialized.totp_secret).now()})
        assert signed_in.status_code == 200, signed_in.text
        yield Fleet(first, second, signed_in.json()["token"], context)


@pytest.mark.slow
def test_a_logout_a_rotation_and_a_disable_through_one_process_hold_on_the_other(
        vault_on_postgres: tuple[Settings, bootstrap.InitResult], redis_url: str) -> None:
    """Revocation is read per request from the shared database: the other process refuses
    the credential on its next request (well within the second the policy allows)."""
    with two_servers(vault_on_postgres, redis_url) as fleet:
        first, second, admin, client = fleet.first, fleet.second, fleet.admin, fleet.client
        with client(first, admin) as on_first:
            made = on_first.post("/accounts", json={
                "kind": "service", "name": "label printer",
                "grants": [{"role": "ingest", "tenant": "acme"}]}).json()
            operator = on_first.post("/accounts", json={
                "kind": "service", "name": "on-call operator",
                "grants": [{"role": "operator", "tenant": "*"}]}).json()["api_key"]
        with client(second, made["api_key"]) as key_on_second, \
                client(second, admin) as admin_on_second, client(first, admin) as on_first:
            assert key_on_second.get("/session").status_code == 200
            assert admin_on_second.get("/session").status_code == 200
            # An account's kill switch set through the first: refused (403) by the second.
            with client(first, operator) as operator_on_first:
                assert operator_on_first.post("/killswitches/set", json={
                    "scope": "account", "subject": made["id"]}).status_code == 204
                _refused_within_a_second(lambda: key_on_second.get("/session").status_code,
                                         403)
                assert operator_on_first.post("/killswitches/clear", json={
                    "scope": "account", "subject": made["id"]}).status_code == 204
                _refused_within_a_second(lambda: key_on_second.get("/session").status_code,
                                         200)
            # A key revoked through the first (rotated with no overlap): it stops on the
            # second, and the new one works there.
            rotated = on_first.post(f"/accounts/{made['id']}/api-keys",
                                    json={"overlap_hours": 0})
            assert rotated.status_code == 201, rotated.text
            _refused_within_a_second(lambda: key_on_second.get("/session").status_code)
            key_on_second.headers["Authorization"] = f"Bearer {rotated.json()['api_key']}"
            assert key_on_second.get("/session").status_code == 200
            # Disabled through the first process: the key stops on the second.
            assert on_first.post(f"/accounts/{made['id']}/disable").status_code == 200
            _refused_within_a_second(lambda: key_on_second.get("/session").status_code)
            # Signed out through the first: the session stops on the second.
            assert on_first.delete("/session").status_code == 204
            _refused_within_a_second(lambda: admin_on_second.get("/session").status_code)


def _wait_for(check: Any, seconds: float = 10.0) -> None:
    """Poll ``check`` until it is true (the detectors act after the request, on their own
    thread)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_server_processes_detect_together(
        vault_on_postgres: tuple[Settings, bootstrap.InitResult], redis_url: str) -> None:
    """Denials spread across two processes raise one alert; a canary touched through one
    process disables the account, which the other refuses at its next request."""
    runtime = Runtime.open(vault_on_postgres[0])
    with ExitStack() as closing, two_servers(vault_on_postgres, redis_url) as fleet:
        closing.callback(runtime.close)
        first, second, admin, client = fleet.first, fleet.second, fleet.admin, fleet.client
        with client(first, admin) as on_first:
            keys = {role: on_first.post("/accounts", json={
                "kind": "service", "name": f"detected {role}",
                "grants": [{"role": role, "tenant": "acme"}]}).json()
                for role in ("ingest", "analyst")}
        order = next(synthetic_orders(1))
        with client(first, keys["ingest"]["api_key"]) as ingest:
            assert ingest.post("/tenants/acme/orders", json={"orders": [order]}).is_success
        analyst = keys["analyst"]
        with client(first, analyst["api_key"]) as on_first, \
                client(second, analyst["api_key"]) as on_second:
            for _ in range(5):  # a tenant it holds no grant on: denied, on both
                assert on_first.get("/tenants/globex/orders/111-0000000-0000001"
                                    ).status_code == 404
                assert on_second.get("/tenants/globex/orders/111-0000000-0000001"
                                     ).status_code == 404
            denied = sorted([("unauthorized-calls", analyst["id"]),  # and its address's
                             ("unauthorized-calls", "address:127.0.0.1")])
            _wait_for(lambda: sorted(_alerts(runtime)) == denied)
            with runtime.store.transaction() as session:
                canary = session.scalars(select(Order.amazon_order_id).where(
                    Order.tenant_id == "acme", Order.is_canary.is_(True))).first()
            assert canary is not None
            assert on_second.get("/session").status_code == 200
            assert on_first.get(f"/tenants/acme/orders/{canary}").status_code == 200
            _wait_for(lambda: on_second.get("/session").status_code == 401)
    assert ("canary-access", analyst["id"]) in _alerts(runtime)
    assert len(_alerts(runtime)) == 3


def _alerts(runtime: Runtime) -> list[tuple[str, str]]:
    with runtime.store.transaction() as session:
        return [(rule, subject) for rule, subject in session.execute(
            select(AlertRow.rule, AlertRow.subject).order_by(AlertRow.created_at))]
