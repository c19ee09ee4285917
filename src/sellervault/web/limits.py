"""How much of a request the server takes in before refusing it.

Nothing here is a tunable of the policy; the numbers bound memory and work per request so
that an anonymous caller cannot make the server hold or parse more than a legitimate client
ever sends. A refusal reads nothing more of the request than it has to.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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

_TOO_LARGE_HEAD = json.dumps({"error": {
    "code": "headers_too_large",
    "message": "the request line, headers or chunk framing are too large"}}).encode()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools) with bounds on what is not body.

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
    """

    security_headers: list[tuple[bytes, bytes]] = []
    connections_by_address: dict[str, int] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._overhead = 0
        self._in_head = True
        self._head_timer: asyncio.TimerHandle | None = None
        self._address: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        held = self.connections_by_address.get(address, 0)
        if held >= MAX_CONNECTIONS_PER_ADDRESS:
            transport.close()
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
        if self._in_head and self._head_timer is None:
            self._arm_head_timer()  # the first byte of a new request's head
        while data:
            room = MAX_HEAD_BYTES - self._overhead
            if room <= 0:
                self._refuse_head()
                return
            piece, data = data[:room], data[room:]
            self._overhead += len(piece)
            super().data_received(piece)
            if self.transport.is_closing():
                return

    def on_body(self, body: bytes) -> None:
        self._overhead -= len(body)
        super().on_body(body)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._overhead = 0

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse_head(self) -> None:
        head = [b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(_TOO_LARGE_HEAD),
                b"connection: close\r\n"]
        head += [name + b": " + value + b"\r\n" for name, value in self.security_headers]
        self.transport.write(b"".join(head) + b"\r\n" + _TOO_LARGE_HEAD)
        self.transport.close()


def bounded_protocol(security_headers: list[tuple[bytes, bytes]]) -> type[asyncio.Protocol]:
    """The protocol class for one server: its 431s carry that server's headers, and it
    counts its own connections per address."""
    return type("SellerVaultHttpProtocol", (BoundedHttpToolsProtocol,),
                {"security_headers": list(security_headers), "connections_by_address": {}})
