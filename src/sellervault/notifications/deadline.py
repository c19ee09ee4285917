"""An overall deadline for one delivery attempt, from the first connection to the last answer.

The standard library's timeouts (``smtplib``, ``http.client``, ``ssl``) bound each blocking
read or write, not the exchange: a peer, or anyone on the path before STARTTLS, that drips one
line (or one byte) a little faster than the timeout keeps an attempt going for ever, and with
it the ``alert-notifications`` job and every job behind it on the scheduler's one thread.

So a watchdog timer runs beside each attempt. Every connection the attempt opens is made here
(``connect``), which keeps a duplicate of its socket; when the deadline passes, the watchdog
shuts that socket down. ``shutdown`` acts on the connection, not on one descriptor, so it
reaches whatever wraps it by then (the TLS socket STARTTLS puts in its place, a TLS handshake
half done): the blocked read returns at once, the client library raises, and the attempt fails
like any other (``expired`` tells the caller why)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType
from typing import Any


class Deadline:
    """``seconds`` from ``__enter__`` for everything done on the connections made by
    ``connect``; used as a context manager around one attempt."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._ends = float("inf")
        self._lock = threading.Lock()
        self._watched: list[socket.socket] = []
        self._expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True  # (never keeps a process alive that is shutting down)

    def __enter__(self) -> Deadline:
        self._ends = time.monotonic() + self._seconds
        self._timer.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._timer.cancel()
        with self._lock:
            for duplicate in self._watched:  # (closing a duplicate leaves the connection be)
                duplicate.close()
            self._watched.clear()

    @property
    def expired(self) -> bool:
        """Whether the deadline passed (and the connections were cut)."""
        with self._lock:
            return self._expired

    def left(self) -> float:
        return self._ends - time.monotonic()

    def connect(self, address: tuple[str, int], timeout: float | None) -> socket.socket:
        """A TCP connection to ``address`` (each of the host's addresses in turn, as
        ``socket.create_connection``), each try given no more than the time left, and watched
        from then on. Raises ``OSError`` (``TimeoutError`` once no time is left)."""
        host, port = address
        error: OSError = TimeoutError("the attempt's deadline passed")
        for family, kind, proto, _, target in self._resolve(host, port):
            left = self.left()
            if left <= 0:
                raise TimeoutError("the attempt's deadline passed")
            connection = socket.socket(family, kind, proto)
            try:
                connection.settimeout(left if timeout is None else min(timeout, left))
                connection.connect(target)
            except OSError as exc:
                connection.close()
                error = exc
                continue
            connection.settimeout(timeout)
            self._watch(connection)
            return connection
        raise error

    def _resolve(self, host: str, port: int) -> list[Any]:
        """The host's addresses, looked up within the time left: the system's resolver has
        no timeout of its own to give it (a lookup that outlives the deadline goes on in
        its thread, and its answer is dropped)."""
        found: list[Any] = []
        failed: list[OSError] = []

        def look_up() -> None:
            try:
                found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
            except OSError as exc:
                failed.append(exc)

        lookup = threading.Thread(target=look_up, name="sellervault-notify-dns", daemon=True)
        lookup.start()
        lookup.join(max(0.0, self.left()))
        if lookup.is_alive():
            raise TimeoutError("the attempt's deadline passed while the host was looked up")
        if failed:
            raise failed[0]
        return found

    def _watch(self, connection: socket.socket) -> None:
        with self._lock:
            duplicate = connection.dup()
            self._watched.append(duplicate)
            if self._expired:
                _cut(duplicate)

    def _expire(self) -> None:
        """The watchdog: the deadline passed with the attempt still going."""
        with self._lock:
            self._expired = True
            for duplicate in self._watched:
                _cut(duplicate)


def _cut(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):  # (already closed by the other side)
        connection.shutdown(socket.SHUT_RDWR)
