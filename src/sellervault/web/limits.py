"""How much of a request the server takes in before refusing it, and how it refuses.

Nothing here is a tunable of the policy; the numbers bound memory and work per request so
that an anonymous caller cannot make the server hold or parse more than a legitimate client
ever sends. A refusal reads nothing more of the request than it has to.

Every request refused here, before the application sees it, is reported to the server's
``on_refused`` (``web.refusals``), which writes it to the security log as ``http:refused``
with its reason: the count per source address that detectors read.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import re
import secrets
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("sellervault.web")

MIB = 1024 * 1024
MAX_BODY_BYTES = 64 * 1024
"""Every route but ingest: a login, a password change or an account takes under 2 KiB."""
MAX_INGEST_BODY_BYTES = 16 * MIB
"""An ingest request: at most 1,000 orders, so 16 KiB per order on average, several times
a real SP-API order with its buyer and address (1 to 3 KiB)."""
MAX_HEAD_BYTES = 16 * 1024
"""Everything of a request that is not body (request line, headers, chunk framing,
trailers), as Node.js and uvicorn's h11 allow for the head: a bearer token is under 100
bytes."""
HEAD_TIMEOUT_SECONDS = 10.0
"""From a connection's start, or a request head's first byte, to the end of that head."""
MAX_CONNECTIONS_PER_ADDRESS = 32
"""Connections one client address may hold open at once."""
HTTP_VERSIONS = frozenset({"1.0", "1.1"})
"""What llhttp parses besides (0.9: a request line without a version, or 2.0 written out as
text) has no meaning here; uvicorn served it as if it were 1.x."""


class Refusal(StrEnum):
    """Why the HTTP layer refused a request: the ``reason`` of its ``http:refused`` event,
    and the error code of its response when it gets one."""

    MALFORMED_REQUEST = "malformed_request"
    HEADERS_TOO_LARGE = "headers_too_large"
    SERVER_BUSY = "server_busy"
    HEAD_TIMEOUT = "head_timeout"  # closed, no response
    TOO_MANY_CONNECTIONS = "too_many_connections"  # closed, no response


OnRefused = Callable[[str | None, Refusal, int | None, str], None]
"""Called on the event loop with the client address, the reason, the status sent (None when
the connection was closed without a response) and the request id; must not block."""

_ANSWERS: dict[Refusal, tuple[int, str]] = {
    Refusal.MALFORMED_REQUEST: (400, "the request is malformed"),
    Refusal.HEADERS_TOO_LARGE: (
        431, "the request line, headers or chunk framing are too large"),
    Refusal.SERVER_BUSY: (503, "the server is at its connection limit; try again later"),
}
"""Fixed messages: nothing of the request is ever echoed."""

_VERSIONLESS_LINE = re.compile(rb"[A-Z]+ [^\s]+\r?\n")
"""A whole request line without a version: method (llhttp's are capitals), space, target."""


def _not_recorded(address: str | None, refusal: Refusal, status: int | None,
                  request_id: str) -> None:
    """The protocol class used on its own (``bounded_protocol`` gives it the server's)."""


class _StopParsing(Exception):
    """Raised in a parser callback to stop the parser (llhttp goes no further once a callback
    fails); ``_refusing`` says why."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools) with bounds on what is not body, and its
    refusals answered and logged like the application's.

    httptools buffers a header (or a chunked body's trailer) of any size until it is complete
    (a 32 MiB header was accepted), uvicorn sets no limit for it, and it times nothing until a
    connection's first response. Here:

    - Every byte of a message that is not body (request line, headers, chunk framing and
      extensions, trailers) counts: bytes fed to the parser less the body it hands back. Past
      ``MAX_HEAD_BYTES`` the connection gets a 431 and is closed, the rest unread. Data is fed
      in slices no larger than the room left, so the bound holds within one read (pipelined
      messages in one read: at most twice the bound, at a message boundary).
    - A request head must be complete within ``HEAD_TIMEOUT_SECONDS`` of the connection's
      start or of its first byte; a connection that idles or trickles is closed. (Idle time
      between requests is uvicorn's keep-alive timeout.)
    - One client address holds at most ``MAX_CONNECTIONS_PER_ADDRESS`` connections; more are
      closed at once, so one address cannot fill the server-wide cap.
    - Past the server-wide cap (uvicorn's ``limit_concurrency``, checked here instead, as
      uvicorn does: open connections or requests in progress) a request gets a 503.
    - What the parser refuses (a control character in a header, Transfer-Encoding with
      Content-Length, two Content-Lengths, a bad request line or chunk framing) and a request
      line of any version but 1.0 and 1.1 get a 400. uvicorn answered these in plain text,
      without the security headers; this class feeds the parser itself to answer them.

    Each refusal gets ``{"error": {"code", "message"}}`` with a fixed message, the security
    headers, an ``X-Request-Id`` and ``Connection: close``, and closes the connection (a head
    timeout or a connection over the per-address cap is closed without an answer). Each is
    reported once to ``on_refused``, which must not block. No response is written while one
    of this connection's is partly written (pipelining): the connection is only closed.
    """

    security_headers: list[tuple[bytes, bytes]] = []
    connections_by_address: dict[str, int] = {}
    on_refused: OnRefused = staticmethod(_not_recorded)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The server-wide cap is checked in on_headers_complete below, not by uvicorn, which
        # answers it with a plain-text app of its own.
        self._capacity: int | None = self.limit_concurrency
        self.limit_concurrency = None
        self._overhead = 0
        self._in_head = True
        self._url_seen = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._address: str | None = None
        self._refusing: Refusal | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        held = self.connections_by_address.get(address, 0)
        if held >= MAX_CONNECTIONS_PER_ADDRESS:
            self._refuse(Refusal.TOO_MANY_CONNECTIONS)
            return
        self._address = address
        self.connections_by_address[address] = held + 1
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._address is not None:
            left = self.connections_by_address.get(self._address, 1) - 1
            if left > 0:
                self.connections_by_address[self._address] = left
            else:
                self.connections_by_address.pop(self._address, None)
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused, or closed after a response: nothing more is read
        if self._in_head and self._head_timer is None:
            self._arm_head_timer()  # the first byte of a new request's head
        while data:
            room = MAX_HEAD_BYTES - self._overhead
            if room <= 0:
                self._refuse(Refusal.HEADERS_TOO_LARGE)
                return
            piece, data = data[:room], data[room:]
            self._overhead += len(piece)
            self._feed(piece)
            if self.transport.is_closing():
                return

    def _feed(self, piece: bytes) -> None:
        """uvicorn's ``data_received`` for one slice, with this class's refusals."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            self._never_upgrade()
            return
        except httptools.HttpParserError:  # (also a callback's _StopParsing, or its failure)
            self._refuse(self._refusing or Refusal.MALFORMED_REQUEST)
            return
        if self._in_head and self._ends_a_versionless_line(piece):
            self._refuse(Refusal.MALFORMED_REQUEST)

    def _ends_a_versionless_line(self, piece: bytes) -> bool:
        """Whether this request's head so far is a request line without a version (HTTP/0.9),
        which llhttp accepts and then reads headers after. A 0.9 client waits for an answer,
        so it gets its 400 now rather than a close at the head timeout.

        llhttp sets version 0.9 only on the byte after such a line, and until a request's
        version is read leaves the previous request's in place. So: 0.9 once anything
        follows the line; before that, a URL read and the data ending in a line break, with
        the version still 0.0 (a connection's first request: a line with a version sets it
        before its line break), or this read being that whole line (a later request: a header
        line never has a space right after a name of capitals). A later request's versionless
        line that arrives split from its method, or behind another request's body in one
        read, is closed at the head timeout instead."""
        version = self.parser.get_http_version()
        if version == "0.9":
            return True
        if not self._url_seen or not piece.endswith(b"\n"):
            return False
        return version == "0.0" or _VERSIONLESS_LINE.fullmatch(piece) is not None

    def _never_upgrade(self) -> None:
        """An Upgrade (h2c; CONNECT) is never honoured: WebSockets are off (``web.server``).
        uvicorn has handed the request to the application as a plain one, and llhttp parses
        nothing after an upgrade, so the connection closes after its answer. (uvicorn logged
        two warnings for every read after it, and kept the connection.)"""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        elif not self.transport.is_closing():
            self.transport.close()

    def on_message_begin(self) -> None:
        self._url_seen = False
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._url_seen = True
        super().on_url(url)

    def on_body(self, body: bytes) -> None:
        self._overhead -= len(body)
        super().on_body(body)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        if self.parser.get_http_version() not in HTTP_VERSIONS:
            self._stop(Refusal.MALFORMED_REQUEST)
        if self._capacity is not None and (len(self.connections) >= self._capacity
                                          or len(self.tasks) >= self._capacity):
            self._stop(Refusal.SERVER_BUSY)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._url_seen = False
        self._overhead = 0

    def _stop(self, refusal: Refusal) -> None:
        self._refusing = refusal
        raise _StopParsing()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        self._refuse(Refusal.HEAD_TIMEOUT)

    def _can_answer(self) -> bool:
        """Whether a response written now would not land inside another: no response of
        this connection is partly written, and no earlier request waits for one."""
        cycle = self.cycle
        return not self.pipeline and (cycle is None or cycle.response_complete
                                      or not cycle.response_started)

    def _refuse(self, refusal: Refusal) -> None:
        """Answer (when ``refusal`` has an answer and one can be written), close, report."""
        if self.transport.is_closing():
            return  # already refused or closed: one refusal per connection
        self._cancel_head_timer()
        request_id = secrets.token_hex(8)  # as an application request's (web.context)
        status = None
        if refusal in _ANSWERS and self._can_answer():
            status, message = _ANSWERS[refusal]
            self.transport.write(_answer(status, refusal, message, self.security_headers,
                                         request_id))
        self.transport.close()
        try:
            self.on_refused(self.client[0] if self.client else None, refusal, status,
                            request_id)
        except Exception as exc:  # never the protocol's problem
            log.error("refused request not reported (request %s): %s", request_id,
                      type(exc).__name__)


def _answer(status: int, refusal: Refusal, message: str,
            security_headers: list[tuple[bytes, bytes]], request_id: str) -> bytes:
    body = json.dumps({"error": {"code": refusal.value, "message": message}},
                      separators=(",", ":")).encode()
    head = [b"HTTP/1.1 %d %s\r\n" % (status, http.HTTPStatus(status).phrase.encode()),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n"]
    head += [name + b": " + value + b"\r\n" for name, value in security_headers]
    head.append(b"x-request-id: " + request_id.encode() + b"\r\n")
    return b"".join(head) + b"\r\n" + body


def bounded_protocol(security_headers: list[tuple[bytes, bytes]],
                     on_refused: OnRefused = _not_recorded) -> type[asyncio.Protocol]:
    """The protocol class for one server: its refusals carry that server's headers and are
    reported to its ``on_refused``, and it counts its own connections per address."""
    return type("SellerVaultHttpProtocol", (BoundedHttpToolsProtocol,),
                {"security_headers": list(security_headers), "connections_by_address": {},
                 "on_refused": staticmethod(on_refused)})
