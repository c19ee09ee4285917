"""web.limits and the request gate, from the attacker's side: how much of a request the
server takes in before it refuses.

- A non-public route refuses a request without a bearer token having read only its head:
  the body is never received, held or parsed (before: a 100 MiB anonymous POST grew the
  server by 345 MB before its 401). The refusal closes the connection.
- A body over the route's limit is a 413 (64 KiB everywhere, 16 MiB for ingest), from the
  Content-Length before anything is read, or as soon as a chunked body passes the limit.
- What is not body (request line, headers, chunk framing, trailers) over 16 KiB is a 431 and
  the connection closes, pipelined requests included.
- A request head not complete within 10 s of the connection's start (or of its first byte)
  closes the connection; one client address holds at most 32 connections.
- Connections and requests in progress past ``SELLERVAULT_MAX_CONNECTIONS`` get a 503.
- No WebSocket upgrade is ever served, whatever is installed.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from sellervault import bootstrap
from sellervault.audit.models import EventRow
from sellervault.runtime import Runtime
from sellervault.web import limits
from sellervault.web.limits import MAX_BODY_BYTES, MAX_HEAD_BYTES, MAX_INGEST_BODY_BYTES
from sellervault.web.server import build_server
from tests.support import Server, start_server


@pytest.fixture(scope="module")
def ingest_key(server: Server) -> str:
    return server.create_service(server.admin_token(), "limit prober",
                                 [{"role": "ingest", "tenant": "acme"}])


def _tls(server: Server) -> ssl.SSLSocket:
    parts = urlsplit(server.base_url)
    context = ssl.create_default_context(cafile=str(server.ca_file))
    raw = socket.create_connection((parts.hostname, parts.port), timeout=5)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _response(tls: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP response (status, headers, body) within the socket's timeout."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in
               (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = tls.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _send_head(server: Server, head: str) -> tuple[int, dict[str, str], bytes]:
    """Send a request head only (a body announced but never sent) and read the answer."""
    with _tls(server) as tls:
        tls.sendall(head.encode("latin-1"))
        return _response(tls)


def _last_event(server: Server) -> EventRow:
    with server.runtime.store.transaction() as session:
        return session.scalars(select(EventRow).order_by(EventRow.seq.desc()).limit(1)).one()


BODY_ROUTES = [("POST", "/api/v1/tenants/acme/orders", "orders:ingest"),
               ("POST", "/api/v1/accounts", "accounts:create")]


@pytest.mark.parametrize(("method", "path", "action"), BODY_ROUTES)
def test_no_credentials_is_refused_before_the_body_is_read(server: Server, method: str,
                                                          path: str, action: str) -> None:
    """The body is announced (100 MiB) and never sent: the 401 comes at once. Before, the
    server waited to read the body first (here: until the client gave up)."""
    started = time.monotonic()
    status, headers, body = _send_head(
        server, f"{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                f"content-length: {100 * 1024 * 1024}\r\n\r\n")
    assert status == 401 and b'"unauthenticated"' in body
    assert time.monotonic() - started < 4
    assert headers.get("connection") == "close"  # the rest is not read to find a next request
    assert "strict-transport-security" in headers
    event = _last_event(server)
    assert (event.action, event.outcome, event.status, event.reason) == (
        action, "denied", 401, "unauthenticated")


@pytest.mark.parametrize(("path", "limit"), [("/api/v1/tenants/acme/orders",
                                              MAX_INGEST_BODY_BYTES),
                                             ("/api/v1/session", MAX_BODY_BYTES)])
def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(
        server: Server, ingest_key: str, path: str, limit: int) -> None:
    status, headers, body = _send_head(
        server, f"POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ingest_key}\r\n"
                f"content-type: application/json\r\ncontent-length: {limit + 1}\r\n\r\n")
    assert status == 413 and b'"too_large"' in body
    assert headers.get("connection") == "close"
    assert ingest_key.encode() not in body
    event = _last_event(server)
    assert (event.status, event.outcome, event.reason) == (413, "failed", "too_large")


def test_a_chunked_body_is_refused_once_it_passes_the_limit(server: Server) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(64):  # 4 MiB offered in all
            sent += 65536
            yield b" " * 65536

    with server.client() as client:
        response = client.post("/session", content=chunks(),
                               headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


def test_a_body_within_the_limit_is_served(server: Server) -> None:
    """The control: the same route with a body just under its limit is read and answered."""
    padding = " " * (MAX_BODY_BYTES - 200)
    body = ('{"email":"nobody@example.test","password":"x","totp":"000000"}' + padding)
    with server.client() as client:
        response = client.post("/session", content=body.encode(),
                               headers={"content-type": "application/json"})
    assert response.status_code == 401  # read, parsed and refused on its merits


def test_a_request_head_over_16_kib_gets_431_and_the_server_goes_on(server: Server) -> None:
    with _tls(server) as tls:
        tls.sendall(b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\nx-padding: ")
        try:  # the server closes after 16 KiB: the rest of a 1 MiB header never goes in
            for _ in range(64):
                tls.sendall(b"a" * 16384)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        status, headers, body = _response(tls)
    assert status == 431 and b'"headers_too_large"' in body
    assert headers.get("connection") == "close"
    assert "strict-transport-security" in headers
    with server.client() as client:
        assert client.get("/health").status_code == 200


def test_chunked_trailers_count_against_the_limit(server: Server) -> None:
    """The review's bypass: after a chunked body's last chunk, a trailer of any size was
    buffered by the parser (and added to the request's headers) with no limit and no token
    needed. Now it counts like a header: 431."""
    with _tls(server) as tls:
        tls.sendall(b"POST /api/v1/session HTTP/1.1\r\nhost: x\r\ncontent-type: "
                    b"application/json\r\ntransfer-encoding: chunked\r\n\r\n"
                    b"2\r\n{}\r\n0\r\nx-trailer: ")
        try:
            for _ in range(64):  # 1 MiB offered
                tls.sendall(b"a" * 16384)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        status, _, body = _response(tls)
    assert status == 431 and b'"headers_too_large"' in body


def test_a_pipelined_request_head_is_counted_too(server: Server) -> None:
    """A head that arrives in the same read as the end of the previous request's body."""
    body = b'{"email":"x@example.test","password":"x","totp":"000000"}'
    first = (b"POST /api/v1/session HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
             b"content-length: %d\r\n\r\n" % len(body) + body)
    second = b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\nx-padding: " + b"a" * 200_000
    with _tls(server) as tls:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            tls.sendall(first + second)
        answers = []
        for _ in range(2):
            try:
                answers.append(_response(tls)[0])
            except (ConnectionResetError, ssl.SSLError, IndexError, ValueError):
                break
    assert 431 in answers
    assert 200 not in answers  # the oversized health check was never served


def test_a_head_that_never_completes_is_closed(server: Server,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections that say nothing, or trickle a head, are closed: before, they held a place
    under the server-wide cap for ever (uvicorn times nothing before a first response)."""
    monkeypatch.setattr(limits, "HEAD_TIMEOUT_SECONDS", 0.5)
    with _tls(server) as silent, _tls(server) as trickling:
        trickling.sendall(b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\n")
        time.sleep(1.2)
        for connection in (silent, trickling):
            assert connection.recv(100) == b""  # closed by the server


def test_one_address_cannot_hold_every_connection(server: Server,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_CONNECTIONS_PER_ADDRESS", 3)
    held = [_tls(server) for _ in range(3)]
    try:
        with _tls(server) as fourth:
            assert fourth.recv(100) == b""  # closed at once
    finally:
        for connection in held:
            connection.close()
    time.sleep(0.2)
    with server.client() as client:
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize("length", ["0" * 4400 + "2", "9" * 40])
def test_an_absurd_content_length_is_413_not_500(server: Server, length: str) -> None:
    """llhttp accepts any number of leading zeros; Python's int() refuses over 4,300 digits.
    Before: a 500 for anyone, token or not."""
    status, _, body = _send_head(
        server, f"POST /api/v1/session HTTP/1.1\r\nhost: x\r\ncontent-type: application/json"
                f"\r\ncontent-length: {length}\r\n\r\n{{}}")
    # 2 bytes with leading zeros: read and refused on its merits (422); forty nines: 413 (or
    # the parser's own 400)
    assert status in ((422,) if length.startswith("0") else (400, 413)), body


def test_a_request_head_just_under_the_limit_is_served(server: Server) -> None:
    padding = "a" * (MAX_HEAD_BYTES - 200)
    with server.client(**{"x-padding": padding}) as client:
        assert client.get("/health").status_code == 200


def test_connections_past_the_limit_get_503(runtime: Runtime,
                                            initialized: bootstrap.InitResult) -> None:
    limited = Runtime(runtime.settings.model_copy(update={"max_connections": 3}),
                      runtime.store, runtime.keyring)
    with start_server(limited, initialized) as server:
        idle = [_tls(server) for _ in range(3)]  # connected, saying nothing
        try:
            with server.client() as client:
                refused = client.get("/health")
        finally:
            for connection in idle:
                connection.close()
        assert refused.status_code == 503
        time.sleep(0.2)  # the server notices the closed connections
        with server.client() as client:
            assert client.get("/health").status_code == 200


def test_websocket_upgrades_are_never_served(runtime: Runtime) -> None:
    """uvicorn would upgrade to a WebSocket with any websocket package installed, and a
    WebSocket scope passes the security middleware untouched: the server is built with
    WebSockets off, not merely without a package today."""
    server = build_server(runtime, "127.0.0.1", 0)
    assert server.config.ws == "none"
    server.config.load()
    assert server.config.ws_protocol_class is None
