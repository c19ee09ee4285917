"""notifications.deadline against real TCP peers on loopback: a read blocked on a connection
it made returns (empty, the connection cut) once the deadline passes, however long the socket's
own timeout; no connection is made once no time is left; and a block that ends in time cancels
the watchdog, leaving its connection whole."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from sellervault.notifications.deadline import Deadline
from tests.notifications.peers import stalling_peer


def silent(connection: socket.socket, done: threading.Event) -> None:
    """Says nothing until the test ends."""
    done.wait(30)


def echo(connection: socket.socket, done: threading.Event) -> None:
    """Answers each chunk with itself."""
    while chunk := connection.recv(4096):
        connection.sendall(chunk)


def test_a_read_that_would_block_for_a_minute_returns_at_the_deadline() -> None:
    with stalling_peer(silent) as port, Deadline(0.3) as deadline:
        connection = deadline.connect(("127.0.0.1", port), 60.0)
        started = time.monotonic()
        with connection:
            assert connection.recv(100) == b""  # cut: end of stream
        assert deadline.expired
    assert time.monotonic() - started < 2


def test_no_connection_is_made_once_no_time_is_left() -> None:
    with stalling_peer(silent) as port, Deadline(0.1) as deadline:
        time.sleep(0.2)
        with pytest.raises(TimeoutError):
            deadline.connect(("127.0.0.1", port), 60.0)


def test_a_block_that_ends_in_time_leaves_its_connection_whole() -> None:
    with stalling_peer(echo) as port:
        with Deadline(0.3) as deadline:
            connection = deadline.connect(("127.0.0.1", port), 5.0)
        time.sleep(0.5)  # past the deadline: the watchdog was cancelled with the block
        with connection:
            connection.sendall(b"still there?")
            assert connection.recv(100) == b"still there?"
        assert not deadline.expired


def test_a_host_that_takes_a_minute_to_look_up_fails_at_the_deadline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The system resolver has no timeout of its own (a DNS server that never answers):
    the lookup is held to the attempt's deadline too. (The resolver is the operating
    system's, stood in for here by one that sleeps.)"""
    answered = threading.Event()
    real = socket.getaddrinfo

    def slow(*args: object, **kwargs: object) -> object:
        answered.wait(60)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    started = time.monotonic()
    try:
        with Deadline(0.3) as deadline, pytest.raises(TimeoutError):
            deadline.connect(("notify.example.test", 443), 60.0)
    finally:
        answered.set()
    assert time.monotonic() - started < 2
