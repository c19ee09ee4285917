"""web.limits and the request gate, from the attacker's side: how much of a request the
server takes in before it refuses.

- A non-public route refuses a request without a bearer token having read only its head:
  the body is never received, held or parsed (before: a 100 MiB anonymous POST grew the
  server by 345 MB before its 401). The refusal closes the connection.
- A body over the route's limit is a 413 (64 KiB everywhere, 16 MiB for ingest), from the
  Content-Length before anything is read, or as soon as a chunked body passes the limit.
- A request line and headers over 16 KiB are a 431 and the connection closes, pipelined
  requests included; so is a chunked body's framing (chunk-size lines, extensions,
  trailers) more than 16 KiB ahead of its data, each byte of data paying for one of framing
  (before: 16 KiB of framing in all, and a 12 MiB ingest in 4 KiB chunks got a 431).
- A request head not complete within 10 s of the connection's start (or of its first byte)
  closes the connection; one client address holds at most 32 connections.
- A body must then arrive at 32 KiB/s on average after a 10 s grace: a trickle gets a 408
  ``body_timeout`` (before: a byte every few seconds held a connection for ever), a body at
  a modest pace is served. A refused connection whose client never finishes TLS's close is
  dropped 5 s later (before: 30 s more under the caps).
- A refusal is answered only if its answer is the connection's next response: behind an
  unanswered request, that request is answered and the connection closed (before: the 400
  replaced the earlier answer, and a reveal was logged as delivered).
- Connections and requests in progress past ``SELLERVAULT_MAX_CONNECTIONS`` get a 503.
- What the HTTP parser refuses (a control character in a header, Transfer-Encoding with
  Content-Length, two Content-Lengths, a bad request line, HTTP/0.9) gets a 400 like the
  application's errors: JSON, security headers, the connection closed, nothing echoed.
- Each of these refusals of the HTTP layer (400, 431, 503, a head timeout, a connection over
  the per-address cap) is one ``http:refused`` security event with its reason and the client
  address; before, they left no trace.
- No WebSocket upgrade is ever served, whatever is installed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select, text

from sellervault import bootstrap
from sellervault.audit import verification
from sellervault.audit.models import EventRow
from sellervault.records.synthetic import synthetic_order
from sellervault.runtime import Runtime
from sellervault.web import limits, refusals
from sellervault.web.limits import MAX_BODY_BYTES, MAX_HEAD_BYTES, MAX_INGEST_BODY_BYTES
from sellervault.web.middleware import security_headers
from sellervault.web.server import build_server
from tests.support import (
    Server,
    block_event_writes,
    last_request_event,
    start_server,
    unblock_event_writes,
)


@pytest.fixture(scope="module")
def admin(server: Server) -> str:
    return server.admin_token()


@pytest.fixture(scope="module")
def ingest_key(server: Server, admin: str) -> str:
    return server.create_service(admin, "limit prober", [{"role": "ingest", "tenant": "acme"}])


def _ingest_body(orders: int, size: int, prefix: str) -> bytes:
    """An ingest body of ``orders`` synthetic orders, padded to about ``size`` bytes with
    fields SP-API does not declare (kept, within the body's limit)."""
    padded = []
    for i in range(orders):
        order = synthetic_order(i, prefix=prefix)
        padding = max(size // orders - len(json.dumps(order)) - 20, 0)
        order.update({f"SellerNote{j}": "n" * 4000 for j in range(padding // 4000)})
        order["SellerNote"] = "n" * (padding % 4000)
        padded.append(order)
    return json.dumps({"orders": padded}, separators=(",", ":")).encode()


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




def _last_seq(runtime: Runtime) -> int:
    with runtime.store.transaction() as session:
        return session.scalar(select(func.max(EventRow.seq))) or 0


def _refusal_events(runtime: Runtime, after: int, expected: int) -> list[EventRow]:
    """The ``http:refused`` events after ``after``, once ``expected`` of them are there (they
    are written off the event loop, after the connection is closed), and a moment later, so
    that one too many shows."""
    deadline = time.monotonic() + 10
    while True:
        with runtime.store.transaction() as session:
            events = list(session.scalars(
                select(EventRow).where(EventRow.seq > after, EventRow.action == "http:refused")
                .order_by(EventRow.seq)))
        if len(events) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    with runtime.store.transaction() as session:
        return list(session.scalars(
            select(EventRow).where(EventRow.seq > after, EventRow.action == "http:refused")
            .order_by(EventRow.seq)))


def _refusal(event: EventRow) -> tuple[object, ...]:
    return (event.channel, event.source_ip, event.actor_id, event.outcome, event.status,
            event.reason, event.count)


def _exchange(server: Server, request: bytes) -> tuple[bytes, bool]:
    """Send raw bytes; everything the server answers, and whether it then closed the
    connection (within the socket's timeout)."""
    with _tls(server) as tls:
        tls.sendall(request)
        data = b""
        try:
            while chunk := tls.recv(65536):
                data += chunk
        except TimeoutError:
            return data, False
        except (ConnectionResetError, ssl.SSLError):
            pass
        return data, True


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in
               (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _assert_refusal_answer(server: Server, status: int, headers: dict[str, str], body: bytes,
                           expected_status: int, code: str) -> None:
    """A refusal of the HTTP layer answers like the application's errors do."""
    assert status == expected_status
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    for name, value in security_headers(server.runtime.settings.hsts_max_age):
        assert headers[name.decode()] == value.decode()
    assert len(headers["x-request-id"]) == 16
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"} and error["code"] == code


SESSION_HEAD = (b"POST /api/v1/session HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n")
LOGIN = b'{"email":"x@example.test","password":"x","totp":"000000"}'
"""A login that fails on its merits: 401."""


def _ingest_head(ingest_key: str, framing: bytes) -> bytes:
    return (b"POST /api/v1/tenants/acme/orders HTTP/1.1\r\nhost: x\r\n"
            b"authorization: Bearer " + ingest_key.encode() + b"\r\n"
            b"content-type: application/json\r\n" + framing + b"\r\n")


def _chunked(body: bytes, size: int) -> bytes:
    return b"".join(b"%x\r\n" % len(body[start:start + size]) + body[start:start + size]
                    + b"\r\n" for start in range(0, len(body), size)) + b"0\r\n\r\n"


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
    event = last_request_event(server)
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
    event = last_request_event(server)
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
    before = _last_seq(server.runtime)
    with _tls(server) as tls:
        tls.sendall(b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\nx-padding: ")
        try:  # the server closes after 16 KiB: the rest of a 1 MiB header never goes in
            for _ in range(64):
                tls.sendall(b"a" * 16384)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        status, headers, body = _response(tls)
    _assert_refusal_answer(server, status, headers, body, 431, "headers_too_large")
    [event] = _refusal_events(server.runtime, before, 1)
    assert _refusal(event) == ("api", "127.0.0.1", None, "failed", 431, "headers_too_large", 1)
    assert event.request_id == headers["x-request-id"]
    with server.client() as client:
        assert client.get("/health").status_code == 200


def test_chunked_trailers_count_against_the_limit(server: Server) -> None:
    """The review's bypass: after a chunked body's last chunk, a trailer of any size was
    buffered by the parser (and added to the request's headers) with no limit and no token
    needed. Now it counts like a header: 431."""
    before = _last_seq(server.runtime)
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
    [event] = _refusal_events(server.runtime, before, 1)
    assert (event.reason, event.status) == ("headers_too_large", 431)


def test_a_pipelined_request_head_is_counted_too(server: Server) -> None:
    """A head that arrives in the same read as the end of the previous request's body is
    counted from its first byte: past 16 KiB, nothing more is read and the connection closes.
    The request before it still gets its answer (the connection's next response), and the
    refused one none: a 431 there would have taken the first request's place."""
    second = b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\nx-padding: " + b"a" * 200_000
    before = _last_seq(server.runtime)
    with _tls(server) as tls:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            tls.sendall(SESSION_HEAD % len(LOGIN) + LOGIN + second)
        answers = []
        for _ in range(2):
            try:
                status, headers, _ = _response(tls)
            except (ConnectionResetError, ssl.SSLError, IndexError, ValueError):
                break
            answers.append((status, headers.get("connection")))
    assert answers == [(401, "close")]  # the oversized health check was never served
    [event] = _refusal_events(server.runtime, before, 1)
    assert (event.reason, event.status) == ("headers_too_large", None)


def test_a_head_that_never_completes_is_closed(server: Server,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections that say nothing, or trickle a head, are closed: before, they held a place
    under the server-wide cap for ever (uvicorn times nothing before a first response)."""
    monkeypatch.setattr(limits, "HEAD_TIMEOUT_SECONDS", 0.5)
    before = _last_seq(server.runtime)
    with _tls(server) as silent, _tls(server) as trickling:
        trickling.sendall(b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\n")
        time.sleep(1.2)
        for connection in (silent, trickling):
            assert connection.recv(100) == b""  # closed by the server, with no answer
    events = _refusal_events(server.runtime, before, 2)
    assert [_refusal(event) for event in events] == [
        ("api", "127.0.0.1", None, "failed", None, "head_timeout", 1)] * 2
    assert len({event.request_id for event in events}) == 2


def test_one_address_cannot_hold_every_connection(server: Server,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_CONNECTIONS_PER_ADDRESS", 3)
    before = _last_seq(server.runtime)
    held = [_tls(server) for _ in range(3)]
    try:
        with _tls(server) as fourth:
            assert fourth.recv(100) == b""  # closed at once, with no answer
    finally:
        for connection in held:
            connection.close()
    [event] = _refusal_events(server.runtime, before, 1)
    assert _refusal(event) == ("api", "127.0.0.1", None, "denied", None,
                               "too_many_connections", 1)
    with server.client() as client:
        assert client.get("/health").status_code == 200


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """What the server logs, uvicorn's and asyncio's included (uvicorn's does not
    propagate)."""
    caplog.set_level(logging.INFO)
    loggers = [logging.getLogger(name) for name in ("uvicorn", "asyncio")]
    for logger in loggers:
        logger.addHandler(caplog.handler)
    yield caplog
    for logger in loggers:
        logger.removeHandler(caplog.handler)


def _events_after(runtime: Runtime, after: int, action: str) -> list[EventRow]:
    with runtime.store.transaction() as session:
        return list(session.scalars(select(EventRow).where(
            EventRow.seq > after, EventRow.action == action).order_by(EventRow.seq)))


@pytest.mark.parametrize("trickle", [True, False], ids=["a byte at a time", "nothing more"])
def test_a_body_that_trickles_is_cut_off(server: Server, monkeypatch: pytest.MonkeyPatch,
                                         server_log: pytest.LogCaptureFixture,
                                         trickle: bool) -> None:
    """The review's attack, scaled down: ``POST /session`` announcing 60,000 bytes, sending
    ``{`` and then a byte every so often, or nothing more. Before: the connection stayed open
    as long as the client liked (527 of them kept the server at its cap; one sending nothing
    stayed 150 s). Now: a 408 once the grace is used (1 s here, 10 s in production), the
    connection closed and the refusal logged. The application, which was waiting for the
    body, ends without an error: it records its request as failed (a 400 it cannot send)."""
    monkeypatch.setattr(limits, "BODY_GRACE_SECONDS", 1.0)
    before = _last_seq(server.runtime)
    raw = b""
    with _tls(server) as tls:
        tls.sendall(SESSION_HEAD % 60000 + b"{")
        started = time.monotonic()
        tls.settimeout(0.2)
        while time.monotonic() - started < 6:
            try:
                chunk = tls.recv(65536)
            except TimeoutError:
                if trickle:
                    with contextlib.suppress(OSError):
                        tls.sendall(b" ")
                continue
            if not chunk:
                break
            raw += chunk
        elapsed = time.monotonic() - started
    assert raw, "the server is still waiting for the body"
    assert 0.9 <= elapsed < 4.0  # the grace, and not much more
    status, headers, body = _parse(raw)
    _assert_refusal_answer(server, status, headers, body, 408, "body_timeout")
    [event] = _refusal_events(server.runtime, before, 1)
    assert _refusal(event) == ("api", "127.0.0.1", None, "failed", 408, "body_timeout", 1)
    assert event.request_id == headers["x-request-id"]
    deadline = time.monotonic() + 10
    while not (ended := _events_after(server.runtime, before, "session:create")):
        assert time.monotonic() < deadline, "the application's request never ended"
        time.sleep(0.05)
    assert [(e.outcome, e.status) for e in ended] == [("failed", 400)]
    assert verification.verify(server.runtime.store, server.runtime.keyring).ok
    assert [r.getMessage() for r in server_log.records if r.levelno >= logging.WARNING] == []
    with server.client() as client:
        assert client.get("/health").status_code == 200


def test_a_body_at_a_modest_pace_is_served(server: Server, ingest_key: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: about 200 KiB to the ingest route in 10 KiB pieces over 2 s (100 KiB/s,
    a slow uplink), with a grace of 0.5 s: the rate it keeps, not the grace, is what lets it
    through. In production a 16 MiB ingest has 10 s + 512 s."""
    monkeypatch.setattr(limits, "BODY_GRACE_SECONDS", 0.5)
    body = _ingest_body(150, 200 * 1024, "905")
    with _tls(server) as tls:
        tls.sendall(_ingest_head(ingest_key, b"content-length: %d\r\n" % len(body)))
        for start in range(0, len(body), 10240):
            time.sleep(0.1)
            tls.sendall(body[start:start + 10240])
        status, _, answer = _response(tls)
    assert status == 200, answer
    assert json.loads(answer)["ingested"] == 150


def test_the_body_clock_stops_while_the_server_is_not_reading(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request pipelined behind one still being answered is not read until that answer is
    out (here the first request's event waits for the log's head, locked by the test): the
    wait is the server's, and the body's clock starts when the server reads again."""
    monkeypatch.setattr(limits, "BODY_GRACE_SECONDS", 0.3)
    with _tls(server) as tls:
        with server.runtime.store.transaction() as session:  # (SQLite: the writer)
            session.execute(text("UPDATE security_event_head SET seq = seq WHERE id = 1"))
            tls.sendall(b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\n\r\n"
                        + SESSION_HEAD % len(LOGIN) + LOGIN[:1])
            time.sleep(1.2)
        assert _response(tls)[0] == 200
        tls.sendall(LOGIN[1:])
        assert _response(tls)[0] == 401


def test_a_refused_connection_is_dropped_when_its_client_never_closes(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection the server closes stays counted, under the per-address and server-wide
    caps, until TLS's close completes, and asyncio and uvloop wait 30 s for a client that
    never answers the server's close_notify: a head timeout held a place for 40 s, not 10.
    Now a refused connection is dropped ``CLOSE_TIMEOUT_SECONDS`` after its refusal."""
    monkeypatch.setattr(limits, "MAX_CONNECTIONS_PER_ADDRESS", 1)
    monkeypatch.setattr(limits, "HEAD_TIMEOUT_SECONDS", 0.3)
    monkeypatch.setattr(limits, "CLOSE_TIMEOUT_SECONDS", 0.5)
    with _tls(server):  # says nothing, reads nothing, never closes
        time.sleep(2.0)
        with _tls(server) as second:  # the address's one place is free again
            second.sendall(b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\n\r\n")
            assert _response(second)[0] == 200


def test_a_large_body_in_4_kib_chunks_is_served(server: Server, ingest_key: str) -> None:
    """The review's finding: a 12 MiB ingest sent chunked in 4 KiB pieces (Java's default)
    got a 431, its 2,964 chunk-size lines and line breaks (8 bytes each) counted against the
    head's 16 KiB. Here 10 MiB in 2,550 chunks: 20 KiB of framing, well behind its data."""
    body = _ingest_body(1000, 10 * limits.MIB, "907")
    with _tls(server) as tls:
        tls.settimeout(60)  # a thousand orders to store
        tls.sendall(_ingest_head(ingest_key, b"transfer-encoding: chunked\r\n")
                    + _chunked(body, 4096))
        status, _, answer = _response(tls)
    assert status == 200, answer[:300]
    assert json.loads(answer)["ingested"] == 1000


CHUNK_ABUSE = {
    "a chunk extension of 1 MiB": b"1;x=" + b"a" * limits.MIB + b"\r\n{\r\n0\r\n\r\n",
    "20,000 chunks of 1 byte (5 of framing each)": b"1\r\n \r\n" * 20_000 + b"0\r\n\r\n",
}


@pytest.mark.parametrize("chunks", list(CHUNK_ABUSE.values()), ids=list(CHUNK_ABUSE))
def test_chunk_framing_far_ahead_of_its_data_gets_431(server: Server, chunks: bytes) -> None:
    """What the chunk framing may cost is still bounded: not per message any more, but
    against the data it carries (a byte of framing per byte of data, 16 KiB ahead at most).
    A public route, no token needed; the body is within its 64 KiB."""
    before = _last_seq(server.runtime)
    with _tls(server) as tls:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            tls.sendall(b"POST /api/v1/session HTTP/1.1\r\nhost: x\r\ncontent-type: "
                        b"application/json\r\ntransfer-encoding: chunked\r\n\r\n" + chunks)
        status, headers, body = _response(tls)
    _assert_refusal_answer(server, status, headers, body, 431, "headers_too_large")
    [event] = _refusal_events(server.runtime, before, 1)
    assert (event.reason, event.status) == ("headers_too_large", 431)


@pytest.mark.parametrize("length", ["0" * 4400 + "2", "9" * 40])
def test_an_absurd_content_length_is_413_not_500(server: Server, length: str) -> None:
    """llhttp accepts any number of leading zeros; Python's int() refuses over 4,300 digits.
    Before: a 500 for anyone, token or not."""
    before = _last_seq(server.runtime)
    status, _, body = _send_head(
        server, f"POST /api/v1/session HTTP/1.1\r\nhost: x\r\ncontent-type: application/json"
                f"\r\ncontent-length: {length}\r\n\r\n{{}}")
    # 2 bytes with leading zeros: read and refused on its merits (422); forty nines: 413 (or
    # the parser's own 400)
    assert status in ((422,) if length.startswith("0") else (400, 413)), body
    if status == 400:  # the parser's: a refusal of the HTTP layer, logged as one
        assert b'"malformed_request"' in body
        assert [e.reason for e in _refusal_events(server.runtime, before, 1)] == [
            "malformed_request"]


def test_a_request_head_just_under_the_limit_is_served(server: Server) -> None:
    padding = "a" * (MAX_HEAD_BYTES - 200)
    with server.client(**{"x-padding": padding}) as client:
        assert client.get("/health").status_code == 200


def test_connections_past_the_limit_get_503(runtime: Runtime,
                                            initialized: bootstrap.InitResult) -> None:
    limited = Runtime(runtime.settings.model_copy(update={"max_connections": 3}),
                      runtime.store, runtime.keyring, runtime.clock)
    with start_server(limited, initialized) as server:
        before = _last_seq(runtime)
        idle = [_tls(server) for _ in range(3)]  # connected, saying nothing
        try:
            status, headers, body = _send_head(
                server, "GET /api/v1/health HTTP/1.1\r\nhost: x\r\n\r\n")
        finally:
            for connection in idle:
                connection.close()
        _assert_refusal_answer(server, status, headers, body, 503, "server_busy")
        # the server had no room: not the client's doing (a 5xx is an error, web.refusals)
        [event] = _refusal_events(runtime, before, 1)
        assert _refusal(event) == ("api", "127.0.0.1", None, "error", 503, "server_busy", 1)
        assert event.request_id == headers["x-request-id"]
        with server.client() as client:
            assert client.get("/health").status_code == 200


MARKER = "sv-probe-4f1c9a"
"""In every malformed request below; never in an answer."""

MALFORMED = {
    "a control character in a header value":
        f"GET /api/v1/health?q={MARKER} HTTP/1.1\r\nhost: x\r\nx-note: {MARKER}\x01\r\n\r\n",
    "Transfer-Encoding with Content-Length":
        f"POST /api/v1/session?q={MARKER} HTTP/1.1\r\nhost: x\r\ncontent-type: "
        "application/json\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n"
        "0\r\n\r\n",
    "two different Content-Lengths":
        f"POST /api/v1/session?q={MARKER} HTTP/1.1\r\nhost: x\r\ncontent-type: "
        "application/json\r\ncontent-length: 2\r\ncontent-length: 7\r\n\r\n{}",
    "an HTTP/0.9 request line": f"GET /{MARKER}\r\n",
    "an HTTP/0.9 request line with headers (before: served as 1.1)":
        f"GET /api/v1/health?q={MARKER}\r\nhost: x\r\n\r\n",
    "HTTP/2.0 written as text (before: served as 1.1)":
        f"GET /api/v1/health?q={MARKER} HTTP/2.0\r\nhost: x\r\n\r\n",
    "a malformed request line": f"GET/{MARKER} HTTP/1.1\r\nhost: x\r\n\r\n",
    "malformed chunk framing":
        f"POST /api/v1/session?q={MARKER} HTTP/1.1\r\nhost: x\r\ncontent-type: "
        "application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("request_text", list(MALFORMED.values()), ids=list(MALFORMED))
def test_what_the_parser_refuses_is_answered_and_logged_like_any_refusal(
        server: Server, request_text: str) -> None:
    """Finding 9: these got uvicorn's plain-text 400 with no security headers and no event
    (the HTTP/0.9 line was left waiting, and with headers, or as HTTP/2.0, it was served).
    Now: a JSON 400 with the security headers, the connection closed, nothing echoed, and
    one ``http:refused`` event naming the client address."""
    before = _last_seq(server.runtime)
    raw, closed = _exchange(server, request_text.encode("latin-1"))
    assert closed
    assert MARKER.encode() not in raw
    status, headers, body = _parse(raw)
    _assert_refusal_answer(server, status, headers, body, 400, "malformed_request")
    assert raw.count(b"HTTP/1.1 ") == 1  # nothing served besides
    [event] = _refusal_events(server.runtime, before, 1)
    assert _refusal(event) == ("api", "127.0.0.1", None, "failed", 400, "malformed_request", 1)
    assert event.request_id == headers["x-request-id"]
    with server.client() as client:
        assert client.get("/health").status_code == 200


@pytest.fixture(scope="module")
def reader(server: Server, admin: str, ingest_key: str) -> tuple[str, dict[str, Any]]:
    """A pii-reader's token, and an order of acme's to reveal."""
    order = synthetic_order(0, prefix="906")
    with server.client(ingest_key) as client:
        assert client.post("/tenants/acme/orders", json={"orders": [order]}).status_code == 200
    token, _ = server.create_person(admin, "limits.reader@example.test", "Limits Reader",
                                    [{"role": "pii-reader", "tenant": "acme"}])
    return token, order


PIPELINED_MALFORMED = {
    "in its head": b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n",
    "in its chunk framing, its head queued": b"POST /api/v1/session HTTP/1.1\r\nhost: x\r\n"
    b"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
}


@pytest.mark.parametrize("malformed", list(PIPELINED_MALFORMED.values()),
                         ids=list(PIPELINED_MALFORMED))
@pytest.mark.parametrize("first", ["health", "reveal"])
def test_a_malformed_request_behind_a_valid_one_leaves_it_its_answer(
        server: Server, reader: tuple[str, dict[str, Any]], first: str,
        malformed: bytes) -> None:
    """The review's finding: in one write, a valid request and a malformed one behind it.
    Before: the client got only the 400, in the place of the valid request's answer, whose
    event said it was served (for a reveal: PII logged as revealed, never delivered); or,
    with the malformed request's head complete, nothing at all. Now the valid request is
    answered, with ``Connection: close``, the connection closes, and the malformed one,
    never answered nor run, is logged as refused (no status)."""
    token, order = reader
    if first == "health":
        valid, action = b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\n\r\n", "health:read"
    else:
        valid, action = (f"GET /api/v1/tenants/acme/orders/{order['AmazonOrderId']} HTTP/1.1"
                         f"\r\nhost: x\r\nauthorization: Bearer {token}\r\n"
                         "x-access-purpose: fulfillment\r\n\r\n").encode(), "orders:reveal"
    before = _last_seq(server.runtime)
    raw, closed = _exchange(server, valid + malformed)
    assert closed and raw.count(b"HTTP/1.1 ") == 1
    status, headers, body = _parse(raw)
    assert (status, headers["connection"]) == (200, "close"), body
    if first == "reveal":
        assert json.loads(body)["order"]["BuyerInfo"]["BuyerEmail"] == (
            order["BuyerInfo"]["BuyerEmail"])
    [refused] = _refusal_events(server.runtime, before, 1)
    assert _refusal(refused) == ("api", "127.0.0.1", None, "failed", None,
                                 "malformed_request", 1)
    with server.runtime.store.transaction() as session:
        served = session.scalars(select(EventRow).where(
            EventRow.request_id == headers["x-request-id"])).one()
    assert (served.action, served.outcome) == (action, "success")  # and it was
    assert _events_after(server.runtime, before, "session:create") == []  # never run


def test_a_versionless_line_after_a_served_request_is_refused_at_once(server: Server) -> None:
    """A later request on a kept-alive connection: llhttp still holds the first request's
    version there, so the line itself is what shows it has none."""
    before = _last_seq(server.runtime)
    with _tls(server) as tls:
        tls.sendall(b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\n\r\n")
        assert _response(tls)[0] == 200
        tls.sendall(b"GET /api/v1/health\r\n")
        status, headers, body = _response(tls)
        assert tls.recv(100) == b""
    _assert_refusal_answer(server, status, headers, body, 400, "malformed_request")
    [event] = _refusal_events(server.runtime, before, 1)
    assert (event.reason, event.request_id) == ("malformed_request", headers["x-request-id"])


def test_an_upgrade_is_answered_as_a_plain_request_and_the_connection_closed(
        server: Server) -> None:
    """WebSockets are off and h2c is never spoken: llhttp reads nothing after an Upgrade, so
    the request is answered as a plain one and the connection closed (before: it stayed
    open, and each further read logged two warnings)."""
    with _tls(server) as tls:
        tls.sendall(b"GET /api/v1/health HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\n"
                    b"upgrade: h2c\r\n\r\n")
        status, headers, _ = _response(tls)
        assert (status, headers.get("connection")) == (200, "close")
        assert tls.recv(100) == b""


def test_refusals_wait_for_the_log_in_bounded_memory(server: Server,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """While a write of the refusal events waits (here: the log's head is locked), more
    refusals from one address, for one reason, become one event with their ``count``; past
    ``MAX_PENDING`` waiting events, a new key's refusals are counted without an address. The
    sum of ``count`` is every refusal, and the chain verifies."""
    monkeypatch.setattr(refusals, "MAX_PENDING", 1)
    malformed = MALFORMED["a control character in a header value"].encode("latin-1")
    before = _last_seq(server.runtime)
    ids = []
    with server.runtime.store.transaction() as session:  # the head row (SQLite: the writer)
        session.execute(text("UPDATE security_event_head SET seq = seq WHERE id = 1"))
        for _ in range(3):  # the first one's write waits; the next two wait as one event
            raw, _ = _exchange(server, malformed)
            ids.append(_parse(raw)[1]["x-request-id"])
        with _tls(server) as tls:  # a second key, past MAX_PENDING
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
                tls.sendall(b"GET /api/v1/health HTTP/1.1\r\nx-padding: "
                            + b"a" * (MAX_HEAD_BYTES + 1))
            assert _response(tls)[0] == 431
        time.sleep(0.3)
    events = _refusal_events(server.runtime, before, 3)
    assert [(e.source_ip, e.reason, e.count, e.request_id) for e in events] == [
        ("127.0.0.1", "malformed_request", 1, ids[0]),
        ("127.0.0.1", "malformed_request", 2, ids[1]),
        (None, "headers_too_large", 1, events[2].request_id)]
    assert verification.verify(server.runtime.store, server.runtime.keyring).ok


def test_a_refusal_whose_event_cannot_be_written_is_still_answered(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """The event is written off the event loop: a log that refuses it (the database does,
    for real) neither blocks nor breaks the protocol, and the failure is logged by type
    name only."""
    malformed = MALFORMED["two different Content-Lengths"].encode("latin-1")
    before = _last_seq(server.runtime)
    caplog.set_level(logging.ERROR, logger="sellervault.web")
    block_event_writes(server.runtime)
    try:
        for _ in range(2):
            raw, closed = _exchange(server, malformed)
            assert closed and _parse(raw)[0] == 400
        deadline = time.monotonic() + 10
        while sum(int(m.split()[0]) for m in _not_logged(caplog)) < 2:  # both, in 1 or 2
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        unblock_event_writes(server.runtime)
    messages = _not_logged(caplog)
    assert all(re.fullmatch(r"[12] refused requests not logged: \w+", m) for m in messages)
    assert _refusal_events(server.runtime, before, 0) == []
    raw, _ = _exchange(server, malformed)
    assert _parse(raw)[0] == 400
    assert len(_refusal_events(server.runtime, before, 1)) == 1


def _not_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "not logged" in r.getMessage()]


def test_websocket_upgrades_are_never_served(runtime: Runtime) -> None:
    """uvicorn would upgrade to a WebSocket with any websocket package installed, and a
    WebSocket scope passes the security middleware untouched: the server is built with
    WebSockets off, not merely without a package today."""
    server = build_server(runtime, "127.0.0.1", 0)
    assert server.config.ws == "none"
    server.config.load()
    assert server.config.ws_protocol_class is None
