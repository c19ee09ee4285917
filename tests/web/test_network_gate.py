"""The network gate through a real TLS server on loopback: a client outside the allowlist gets
a bare 403 and one security event, nothing more; X-Forwarded-For counts only from a trusted
proxy; the address the application and the log see is the client's.

Loopback is the only network a test can connect from, so each server here is given settings
that make 127.0.0.1 the outsider, or the trusted proxy."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import select

from sellervault import bootstrap
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.config import load_settings
from sellervault.runtime import Runtime
from tests.conftest import init_instance
from tests.support import Server, start_server

StartServer = Callable[..., Server]


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[StartServer]:
    """Start a SQLite-backed server with the given network settings."""
    with ExitStack() as stack:
        def start(**network: str) -> Server:
            data_dir = tmp_path / f"data{len(stack._exit_callbacks)}"
            settings = load_settings(data_dir=data_dir, **network)
            clock = ManualClock()
            initialized: bootstrap.InitResult = init_instance(settings, clock)
            rt = bootstrap.open_runtime(settings, clock)
            stack.callback(rt.close)
            return stack.enter_context(start_server(rt, initialized))
        yield start


def _events(rt: Runtime) -> list[EventRow]:
    with rt.store.transaction() as session:
        return list(session.scalars(select(EventRow).order_by(EventRow.seq)))


def _refusals(rt: Runtime) -> list[EventRow]:
    return [e for e in _events(rt) if e.action == "http:refused"]


def _wait_for(condition: Callable[[], bool]) -> None:
    """The refusal's event is written off the event loop, just after the answer."""

    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the event never came"
        time.sleep(0.02)


def test_a_client_outside_the_allowlist_gets_a_bare_403_and_one_event(
        gated: StartServer) -> None:
    server = gated(allowed_networks="10.0.0.0/8")
    before = len(_events(server.runtime))
    with server.client() as client:
        response = client.post("/session", json={"email": "a@example.test",
                                                 "password": "p" * 20, "totp": "000000"})
    assert response.status_code == 403
    assert response.content == b""  # bare: no code, no reason
    assert "content-type" not in response.headers
    _wait_for(lambda: len(_refusals(server.runtime)) == 1)
    [event] = _refusals(server.runtime)
    assert (event.outcome, event.reason, event.status, event.source_ip) == (
        "denied", "network_not_allowed", 403, "127.0.0.1")
    # Nothing more: no login attempt was made or logged, no session event.
    assert [e.action for e in _events(server.runtime)[before:]] == ["http:refused"]


def test_the_application_is_not_reached_even_with_a_valid_route(gated: StartServer) -> None:
    server = gated(allowed_networks="192.0.2.0/24,2001:db8::/32")
    with server.client() as client:
        for path in ("/health", "/openapi.json", "/session", "/no/such/route"):
            assert client.get(path).status_code == 403


def test_a_forged_forwarded_for_from_an_untrusted_peer_changes_nothing(
        gated: StartServer) -> None:
    """The attacker on loopback claims to be an allowed address: not believed."""
    server = gated(allowed_networks="203.0.113.0/24")
    with server.client(**{"X-Forwarded-For": "203.0.113.9"}) as client:
        assert client.get("/health").status_code == 403
    _wait_for(lambda: len(_refusals(server.runtime)) == 1)
    assert _refusals(server.runtime)[0].source_ip == "127.0.0.1"


def test_behind_a_trusted_proxy_the_forwarded_client_is_checked_and_logged(
        gated: StartServer) -> None:
    server = gated(allowed_networks="203.0.113.0/24", trusted_proxies="127.0.0.1/32")
    with server.client(**{"X-Forwarded-For": "198.51.100.66, 203.0.113.9"}) as client:
        response = client.post("/session", json={"email": "nobody@example.test",
                                                 "password": "p" * 20, "totp": "000000"})
    assert response.status_code == 401  # admitted: the application answered
    [login] = [e for e in _events(server.runtime) if e.action == "session:create"]
    assert login.source_ip == "203.0.113.9"  # the client, not the proxy, not the forged hop
    with server.client(**{"X-Forwarded-For": "198.51.100.66"}) as client:
        assert client.get("/health").status_code == 403
    _wait_for(lambda: len(_refusals(server.runtime)) == 1)
    assert _refusals(server.runtime)[0].source_ip == "198.51.100.66"


def test_a_trusted_proxy_that_names_no_client_is_itself_the_client(gated: StartServer) -> None:
    server = gated(allowed_networks="203.0.113.0/24", trusted_proxies="127.0.0.1/32")
    with server.client() as client:
        assert client.get("/health").status_code == 403
    with server.client(**{"X-Forwarded-For": "unknown"}) as client:
        assert client.get("/health").status_code == 403


def test_the_default_allowlist_admits_loopback(gated: StartServer) -> None:
    server = gated()
    with server.client() as client:
        assert client.get("/health").status_code == 200
