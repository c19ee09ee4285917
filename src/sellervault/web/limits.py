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
"""The request line and headers together (as Node.js and uvicorn's h11 allow): a bearer
token is under 100 bytes."""

_TOO_LARGE_HEAD = json.dumps({"error": {
    "code": "headers_too_large",
    "message": "the request line and headers are too large"}}).encode()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools) with a bound on the request head.

    httptools buffers a header of any size until it is complete (a 32 MiB header was
    accepted), and uvicorn sets no limit for it. Bytes are counted as they arrive while a
    request's head is being parsed; past ``MAX_HEAD_BYTES`` the connection gets a 431 and is
    closed without the rest being read. The count is per chunk received, so a head may run a
    little over before the last headers-complete point is seen (never more than one read)."""

    security_headers: list[tuple[bytes, bytes]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        while data and self._in_head:
            room = MAX_HEAD_BYTES - self._head_bytes
            if room <= 0:
                self._refuse_head()
                return
            chunk, data = data[:room], data[room:]
            self._head_bytes += len(chunk)
            super().data_received(chunk)
            if self.transport.is_closing():
                return
        if data:
            super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def _refuse_head(self) -> None:
        head = [b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(_TOO_LARGE_HEAD),
                b"connection: close\r\n"]
        head += [name + b": " + value + b"\r\n" for name, value in self.security_headers]
        self.transport.write(b"".join(head) + b"\r\n" + _TOO_LARGE_HEAD)
        self.transport.close()


def bounded_protocol(security_headers: list[tuple[bytes, bytes]]) -> type[asyncio.Protocol]:
    """The protocol class for one server, answering its 431s with that server's headers."""
    return type("SellerVaultHttpProtocol", (BoundedHttpToolsProtocol,),
                {"security_headers": list(security_headers)})
