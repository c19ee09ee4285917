"""How much of a request the server takes in before refusing it, and how it refuses.

Nothing here is a tunable of the policy; the numbers bound memory and work per request so
that an anonymous caller cannot make the server hold or parse more than a legitimate client
ever sends. A refusal reads nothing more of the request than it has to.

Every request refused here, before the application sees it, is reported to the server's
``on_refused`` (``web.refusals``), which writes it to the security log as ``http:refused``
with its reason: the count per source address that detectors read.

Time, not only size, is bounded: a connection that sends slowly holds a place under the
server-wide cap (``SELLERVAULT_MAX_CONNECTIONS``) as surely as a busy one. A request head must
be complete within ``HEAD_TIMEOUT_SECONDS``; its body must then arrive at an average of
``MIN_BODY_RATE`` after a grace of ``BODY_GRACE_SECONDS``. The numbers:

- ``MIN_BODY_RATE`` is 32 KiB/s (256 kbit/s): the largest body there is, a 16 MiB ingest,
  may take 512 s (plus the grace). A seller's back office on a 1 Mbit/s uplink (about
  120 KiB/s) sends it in about 140 s, so it keeps nearly four times the time it needs; a
  login or any other body under 64 KiB earns at most 2 s of credit. Holding a connection past
  the grace costs an anonymous client 32 KiB a second, for a body capped at 64 KiB: 12 s at
  most, and then a whole new request (logged) to go on. Before, one byte every few seconds
  held a connection for as long as the client liked.
- ``BODY_GRACE_SECONDS`` is 10 s, the head's own allowance: room for a stall of a mobile or
  congested link, TCP's slow start and a client that sends its head and body in separate
  writes. It is also what a client sending nothing more gets before it is cut off.
- The clock stops while the server is the one waiting: while it has stopped reading (uvicorn
  stops past 64 KiB the application has not taken yet, as while it authenticates the
  caller; and a pipelined request waits for the one before it to be answered) and while it
  has not yet asked for a body announced with ``Expect: 100-continue``. It starts again,
  with a new grace, within a second of the server reading again.

A body too slow gets ``408 body_timeout`` when that is the connection's next response and
the request has no response started (else the connection is only closed), and is logged as
an ``http:refused`` event with that reason. The application may be waiting for that body in
``receive()``: once the connection is gone, uvicorn hands it ``http.disconnect``, which
Starlette raises as ``ClientDisconnect`` and FastAPI turns into an HTTP 400 ("There was an
error parsing the body"), answered like any other. Nothing fails or is logged as an error;
the application's own event for the request is written too, its action ``failed`` with
status 400, after the ``http:refused`` one, and that 400 is never sent (the connection is
gone).

A connection the server closes after a refusal is dropped ``CLOSE_TIMEOUT_SECONDS`` later if
the client has not finished TLS's closing exchange by then: asyncio and uvloop wait 30 s for
the client's ``close_notify``, and the connection stays counted under both caps until then.
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
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from sellervault.network import OPEN_GATE, NetworkGate, client_address, normalise

log = logging.getLogger("sellervault.web")

MIB = 1024 * 1024
MAX_BODY_BYTES = 64 * 1024
"""Every route but ingest: a login, a password change or an account takes under 2 KiB."""
MAX_INGEST_BODY_BYTES = 16 * MIB
"""An ingest request: at most 1,000 orders, so 16 KiB per order on average, several times
a real SP-API order with its buyer and address (1 to 3 KiB)."""
MAX_HEAD_BYTES = 16 * 1024
"""A request's line and headers, as Node.js and uvicorn's h11 allow for the head (a bearer
token is under 100 bytes); and what a chunked body's framing (chunk-size lines, extensions,
the line breaks after chunks, trailers) may run ahead of its data: each byte of body pays for
one byte of framing, so a chunk of 5 bytes or more costs nothing on balance (Java sends 4 KiB
chunks with 8 bytes of framing each), while 1-byte chunks, a long extension or a long trailer
use it up."""
HEAD_TIMEOUT_SECONDS = 10.0
"""From a connection's start, or a request head's first byte, to the end of that head."""
BODY_GRACE_SECONDS = 10.0
"""From a request head's end, the time its body has before it must keep ``MIN_BODY_RATE``
(module docstring)."""
MIN_BODY_RATE = 32 * 1024
"""Bytes a second a body must average after its grace: by ``head end + BODY_GRACE_SECONDS
+ received / MIN_BODY_RATE`` more must have come, or all of it (module docstring)."""
CLOSE_TIMEOUT_SECONDS = 5.0
"""After a refusal closes a connection, how long the client has to finish TLS's closing
exchange (one round trip) before the connection is dropped."""
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
    BODY_TIMEOUT = "body_timeout"
    TOO_MANY_CONNECTIONS = "too_many_connections"  # closed, no response
    NETWORK_NOT_ALLOWED = "network_not_allowed"  # a bare 403 (sellervault.network)


OnRefused = Callable[[str | None, Refusal, int | None, str], None]
"""Called on the event loop with the client address, the reason, the status sent (None when
the connection was closed without a response) and the request id; must not block."""

_ANSWERS: dict[Refusal, tuple[int, str]] = {
    Refusal.MALFORMED_REQUEST: (400, "the request is malformed"),
    Refusal.HEADERS_TOO_LARGE: (
        431, "the request line, headers or chunk framing are too large"),
    Refusal.SERVER_BUSY: (503, "the server is at its connection limit; try again later"),
    Refusal.BODY_TIMEOUT: (408, "the request body did not arrive in time"),
    Refusal.NETWORK_NOT_ALLOWED: (403, ""),
}
"""Fixed messages: nothing of the request is ever echoed."""
_BARE = frozenset({Refusal.NETWORK_NOT_ALLOWED})
"""Answered with the status alone: a client outside the allowlist learns nothing more, not
even why."""

_VERSIONLESS_LINE = re.compile(rb"[A-Z]+ [^\s]+\r?\n")
"""A whole request line without a version: method (llhttp's are capitals), space, target."""


def _not_recorded(address: str | None, refusal: Refusal, status: int | None,
                  request_id: str) -> None:
    """The protocol class used on its own (``bounded_protocol`` gives it the server's)."""


class _StopParsing(Exception):
    """Raised in a parser callback to stop the parser (llhttp goes no further once a callback
    fails); ``_refusing`` says why."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools) with bounds on what is not body and on time,
    and its refusals answered and logged like the application's.

    httptools buffers a header (or a chunked body's trailer) of any size until it is complete
    (a 32 MiB header was accepted), uvicorn sets no limit for it, and it times nothing until a
    connection's first response. Here:

    - A request's line and headers count against ``MAX_HEAD_BYTES``: bytes fed to the parser
      less the body it hands back. Past it the connection gets a 431 and is closed, the rest
      unread. Data is fed in slices no larger than the room left, so the bound holds within
      one read (pipelined messages in one read: at most twice the bound, at a message
      boundary).
    - A chunked body's framing (chunk-size lines and extensions, line breaks, trailers) counts
      against the same allowance, and each byte of body pays one byte of it back (down to
      nothing owed): framing may run at most ``MAX_HEAD_BYTES`` ahead of the data, whatever
      the number of chunks, and past it gets a 431. (Up to twice that at worst: a slice is
      counted whole before it is parsed, so body early in a slice can pay for framing later
      in it.) Counting every chunk's framing against the head's 16 KiB, as before, refused a
      12 MiB body sent in 4 KiB chunks.
    - A request head must be complete within ``HEAD_TIMEOUT_SECONDS`` of the connection's
      start or of its first byte; a connection that idles or trickles is closed. (Idle time
      between requests is uvicorn's keep-alive timeout.)
    - Its body must then be complete by ``head end + BODY_GRACE_SECONDS + received /
      MIN_BODY_RATE``, not counting the time the server is not reading (module docstring);
      else a 408 (or a close, once a response has started).
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
    timeout or a connection over the per-address cap is closed without an answer); the
    connection is dropped if the client has not finished closing it ``CLOSE_TIMEOUT_SECONDS``
    later. Each is reported once to ``on_refused``, which must not block.

    HTTP/1.1 pairs responses with requests by their order alone, so a refusal is answered
    only when its answer is the next response of the connection. When an earlier request
    (pipelined in the same read, say) still waits for its response, or the rest of it, that
    response goes out whole, with ``Connection: close``, and the connection closes after it;
    the refused request gets no answer, nothing more is read, and the refusal is reported
    all the same (no status). (Before, the refusal's 400 went out in place of the earlier
    request's answer, which its event recorded as given: for a reveal, PII logged as revealed
    and never delivered.) A refused request that was itself waiting its turn is never run.
    """

    security_headers: list[tuple[bytes, bytes]] = []
    connections_by_address: dict[str, int] = {}
    on_refused: OnRefused = staticmethod(_not_recorded)
    gate: NetworkGate = OPEN_GATE

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
        self._refused = False
        self._lost = False
        self._close_timer: asyncio.TimerHandle | None = None
        # The request whose head is complete and whose body is still being read, the one
        # parsed before it, and its body's clock.
        self._reading: RequestResponseCycle | None = None
        self._previous: RequestResponseCycle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_since = 0.0
        self._body_received = 0
        self._servers_turn = False
        self._client: str | None = None
        """The client of the request being read, once the gate has admitted it (the TCP
        peer, or whom a trusted proxy forwards for): what the application and a refusal's
        event see."""

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
        self._lost = True  # (a response still being sent must not arm a timer afterwards)
        self._cancel_head_timer()
        self._cancel_body_timer()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._address is not None:
            left = self.connections_by_address.get(self._address, 1) - 1
            if left > 0:
                self.connections_by_address[self._address] = left
            else:
                self.connections_by_address.pop(self._address, None)
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():
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
            if self._refused or self.transport.is_closing():
                return
        if self._reading is not None and self._body_timer is None:
            # A head complete, its body still to come (armed here rather than in
            # on_headers_complete: most requests have no body, or all of it in this read)
            self._arm_body_timer(self._body_since + BODY_GRACE_SECONDS - self.loop.time())

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
        self._reading = None  # nothing more is parsed: no body to time
        self._cancel_body_timer()
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
        # Body is not framing, and pays for as much framing again (MAX_HEAD_BYTES).
        self._overhead = max(self._overhead - 2 * len(body), 0)
        self._body_received += len(body)
        super().on_body(body)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        if self.parser.get_http_version() not in HTTP_VERSIONS:
            self._stop(Refusal.MALFORMED_REQUEST)
        self._admit()
        if self._capacity is not None and (len(self.connections) >= self._capacity
                                          or len(self.tasks) >= self._capacity):
            self._stop(Refusal.SERVER_BUSY)
        previous = self.cycle
        super().on_headers_complete()
        if self.client is not None and self._client is not None:
            self.cycle.scope["client"] = (self._client, self.client[1])
        self._previous, self._reading = previous, self.cycle
        self._body_since = self.loop.time()
        self._body_received = 0
        self._servers_turn = False

    def _admit(self) -> None:
        """The network gate, first of the checks on a complete head: outside the allowlist,
        a bare 403 and nothing of the request goes further."""
        peer = self.client[0] if self.client else None
        forwarded = [value for name, value in self.headers if name == b"x-forwarded-for"]
        address = client_address(peer, forwarded, self.gate.trusted_proxies)
        self._client = None if address is None else str(address)
        if address is None or address not in self.gate.allowed:
            self._stop(Refusal.NETWORK_NOT_ALLOWED)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._url_seen = False
        self._overhead = 0
        self._reading = self._previous = None
        self._cancel_body_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refused and self.transport.is_closing() and self._close_timer is None:
            self._arm_close_timer()  # the response a refusal waited for: the connection ends

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

    def _arm_body_timer(self, delay: float) -> None:
        self._body_timer = self.loop.call_later(max(delay, 0.0), self._check_body_pace)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _check_body_pace(self) -> None:
        """At the body's deadline as last computed: refused if it is still due, else timed
        again for its deadline now (one timer per body, moved on only when it expires)."""
        self._body_timer = None
        cycle = self._reading
        if cycle is None or self._refused or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused or cycle.waiting_for_100_continue:
            # The server's turn: it is not reading, or has not asked for the body yet. Looked
            # at again every second until it is the client's.
            self._servers_turn = True
            self._arm_body_timer(1.0)
            return
        if self._servers_turn:  # the client's turn again: its clock starts anew
            self._servers_turn = False
            self._body_since, self._body_received = now, 0
        deadline = self._body_since + BODY_GRACE_SECONDS + self._body_received / MIN_BODY_RATE
        if now < deadline:
            self._arm_body_timer(deadline - now)
        else:
            self._refuse(Refusal.BODY_TIMEOUT)

    def _unanswered_before(self) -> RequestResponseCycle | None:
        """The last request before the one being refused that still waits for its response
        (or the rest of it), if any: every one before it is answered by then."""
        refused = self._reading
        earlier: RequestResponseCycle | None
        if refused is None:  # refused in its head: every request parsed came before it
            earlier = self.cycle  # (None on a connection's first request)
        elif self.pipeline and self.pipeline[0][0] is refused:  # waiting for its turn
            earlier = self._previous
        else:  # being served: whatever came before it is answered
            return None
        if earlier is None or earlier.response_complete:
            return None
        return earlier

    def _refuse(self, refusal: Refusal) -> None:
        """Answer (when ``refusal`` has an answer and it is the next response of the
        connection), close, report."""
        if self._refused or self.transport.is_closing():
            return  # already refused or closed: one refusal per connection
        self._refused = True
        self._cancel_head_timer()
        self._cancel_body_timer()
        request_id = secrets.token_hex(8)  # as an application request's (web.context)
        status = None
        refused = self._reading
        earlier = self._unanswered_before()
        if refused is not None and self.pipeline and self.pipeline[0][0] is refused:
            self.pipeline.popleft()  # never started: it is refused, not served
        if earlier is not None:
            # Its response goes out whole, then the connection closes (on_response_complete).
            earlier.keep_alive = False
            self.flow.pause_reading()
        else:
            if refusal in _ANSWERS and (refused is None or not refused.response_started):
                status, message = _ANSWERS[refusal]
                self.transport.write(_answer(status, refusal, message, self.security_headers,
                                             request_id))
            self.transport.close()
            self._arm_close_timer()
        try:
            self.on_refused(self._client or normalise(self.client[0] if self.client else None),
                            refusal, status, request_id)
        except Exception as exc:  # never the protocol's problem
            log.error("refused request not reported (request %s): %s", request_id,
                      type(exc).__name__)

    def _arm_close_timer(self) -> None:
        if not self._lost:
            self._close_timer = self.loop.call_later(CLOSE_TIMEOUT_SECONDS, self._drop)

    def _drop(self) -> None:
        """The client has not finished closing the connection (TLS's ``close_notify`` in
        reply to the server's): it is dropped rather than held for asyncio's 30 s."""
        self._close_timer = None
        self.transport.abort()


def _answer(status: int, refusal: Refusal, message: str,
            security_headers: list[tuple[bytes, bytes]], request_id: str) -> bytes:
    bare = refusal in _BARE
    body = b"" if bare else json.dumps({"error": {"code": refusal.value, "message": message}},
                                       separators=(",", ":")).encode()
    head = [b"HTTP/1.1 %d %s\r\n" % (status, http.HTTPStatus(status).phrase.encode()),
            *([] if bare else [b"content-type: application/json\r\n"]),
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n"]
    head += [name + b": " + value + b"\r\n" for name, value in security_headers]
    head.append(b"x-request-id: " + request_id.encode() + b"\r\n")
    return b"".join(head) + b"\r\n" + body


def bounded_protocol(security_headers: list[tuple[bytes, bytes]],
                     on_refused: OnRefused = _not_recorded,
                     gate: NetworkGate = OPEN_GATE) -> type[asyncio.Protocol]:
    """The protocol class for one server: its refusals carry that server's headers and are
    reported to its ``on_refused``, and it counts its own connections per address."""
    return type("SellerVaultHttpProtocol", (BoundedHttpToolsProtocol,),
                {"security_headers": list(security_headers), "connections_by_address": {},
                 "on_refused": staticmethod(on_refused), "gate": gate})
