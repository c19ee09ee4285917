"""Real peers for the notifications' tests, on loopback: an HTTPS receiver (the standard
library's ``http.server`` behind ``ssl``) that checks each webhook's signature as a receiver
would, and an SMTP server (aiosmtpd) with or without STARTTLS and a login; and peers that
stall an exchange (``stalling_peer``) for the attempts' deadlines. Their certificate
is made by the product's own ``generate_self_signed`` and trusted by pinning it as the CA
file, as an operator would a private CA (fixtures ``tls``, ``other_tls``, made available by the
conftest)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from sellervault.clock import SYSTEM_CLOCK, Clock, ManualClock
from sellervault.crypto.tls_identity import generate_self_signed
from sellervault.notifications import webhook
from sellervault.runtime import Runtime
from tests.support import free_port

WEBHOOK_SECRET = "whsec-" + "7f3a9c" * 8  # 54 characters
SMTP_USER, SMTP_PASSWORD = "alerts-sender", "smtp-pw-5d8e1b42c9"
T = TypeVar("T")


@dataclass(frozen=True)
class TlsFiles:
    certificate: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certificate, self.key)
        return context


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A certificate for 127.0.0.1 (and localhost), its own CA: pinned by the tests."""
    directory = tmp_path_factory.mktemp("peer-tls")
    generate_self_signed(directory / "peer.crt", directory / "peer.key", clock=ManualClock())
    return TlsFiles(directory / "peer.crt", directory / "peer.key")


@pytest.fixture(scope="session")
def other_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Another certificate for the same names, which nothing trusts."""
    directory = tmp_path_factory.mktemp("other-tls")
    generate_self_signed(directory / "other.crt", directory / "other.key", clock=ManualClock())
    return TlsFiles(directory / "other.crt", directory / "other.key")


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    verified: bool
    signed_id: str | None
    """The notification id in the signed body (``webhook.verify_delivery``): what a receiver
    de-duplicates on; None when the signature did not verify."""


@dataclass
class Receiver:
    """A webhook receiver: answers each POST with the next of ``statuses`` (then 200), and
    records what came, whether its signature verified against ``secret`` at ``clock``'s
    time (the sender's clock: a ``ManualClock`` in most tests) and the signed delivery id."""

    url: str
    secret: bytes
    clock: Clock
    statuses: list[int] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        timestamp = headers.get(webhook.TIMESTAMP_HEADER.lower(), "")
        signature = headers.get(webhook.SIGNATURE_HEADER.lower(), "")
        now = self.clock.timestamp()
        verified = webhook.verify(self.secret, body, timestamp, signature, now)
        signed_id = webhook.verify_delivery(self.secret, body, timestamp, signature, now)
        with self.lock:
            self.deliveries.append(Delivery(headers, body, verified, signed_id))
            return self.statuses.pop(0) if self.statuses else 200

    def delivery_ids(self) -> list[str | None]:
        """The signed ids of what came, in order: a repeat is a duplicate delivery."""
        with self.lock:
            return [d.signed_id for d in self.deliveries]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            status = receiver.answer(headers, body)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def https_receiver(tls: TlsFiles, secret: bytes, clock: Clock = SYSTEM_CLOCK,
                   host: str = "127.0.0.1") -> Iterator[Receiver]:
    """A receiver listening on ``host`` over TLS (``tls``) until the block ends."""
    server = ThreadingHTTPServer((host, 0), BaseHTTPRequestHandler)
    server.socket = tls.server_context().wrap_socket(server.socket, server_side=True)
    receiver = Receiver(f"https://{host}:{server.server_address[1]}/hooks/sellervault",
                        secret, clock)
    server.RequestHandlerClass = _handler(receiver)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class Inbox:
    """What an SMTP server was told: the MAIL commands (and whether TLS was on by then) and
    the messages (with whether the session had logged in)."""

    mail_from: list[tuple[str, bool]] = field(default_factory=list)
    messages: list[tuple[str, list[str], bytes, bool]] = field(default_factory=list)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any,
                          address: str, mail_options: list[str]) -> str:
        self.mail_from.append((address, session.ssl is not None))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                              bool(session.authenticated)))
        return "250 Message accepted for delivery"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                  auth_data: Any) -> AuthResult:
    good = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
            and auth_data.password == SMTP_PASSWORD.encode())
    return AuthResult(success=good, handled=False)


@dataclass
class SmtpServer:
    host: str
    port: int
    inbox: Inbox


@contextmanager
def smtp_server(tls: TlsFiles | None, *, login: bool = False) -> Iterator[SmtpServer]:
    """aiosmtpd on 127.0.0.1: with STARTTLS (required before MAIL, and before AUTH) when
    ``tls`` is given, else plain SMTP offering no STARTTLS at all."""
    inbox = Inbox()
    options: dict[str, Any] = {}
    if tls is not None:
        options.update(tls_context=tls.server_context(), require_starttls=True,
                       auth_require_tls=True)
    if login:
        options.update(authenticator=_authenticate, auth_required=True)
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", controller.port, inbox)
    finally:
        controller.stop()


# Peers that never finish the exchange: each step answers within any per-step timeout (a line
# or a byte at a time, or nothing yet), so only an overall deadline ends the attempt. Plain
# sockets, not aiosmtpd or http.server, which answer properly.

DRIP_SECONDS = 0.05
"""Between two dripped lines or bytes: far within every per-step timeout."""

Converse = Callable[[socket.socket, threading.Event], None]


@contextmanager
def stalling_peer(converse: Converse) -> Iterator[int]:
    """A TCP server on 127.0.0.1 (its port) running ``converse`` on each connection until the
    block ends (the ``Event`` is set then: a dripping peer stops and hangs up)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    done = threading.Event()

    def talk(connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            connection.settimeout(5)
            converse(connection, done)

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=talk, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join(5)
        listener.close()


def _drip(connection: socket.socket, done: threading.Event, unit: bytes) -> None:
    while not done.wait(DRIP_SECONDS):
        connection.sendall(unit)


def _wait_until_gone(connection: socket.socket, done: threading.Event) -> None:
    """Say nothing until the other side hangs up (or the block ends)."""
    connection.settimeout(DRIP_SECONDS)
    while not done.is_set():
        try:
            if not connection.recv(4096):
                return
        except TimeoutError:
            continue


def stalling_smtp(stall: str) -> Converse:
    """An SMTP peer that stalls at ``stall``: ``greeting`` (an endless multi-line 220),
    ``ehlo`` (greets, then answers EHLO with an endless multi-line 250: what anyone on the path
    before STARTTLS can do), ``starttls`` (offers STARTTLS, agrees to it, then never completes
    the TLS handshake)."""
    def converse(connection: socket.socket, done: threading.Event) -> None:
        if stall == "greeting":
            return _drip(connection, done, b"220-still greeting\r\n")
        connection.sendall(b"220 stalling ESMTP\r\n")
        connection.recv(1000)  # EHLO
        if stall == "ehlo":
            return _drip(connection, done, b"250-PIPELINING\r\n")
        connection.sendall(b"250-stalling\r\n250 STARTTLS\r\n")
        connection.recv(1000)  # STARTTLS
        connection.sendall(b"220 go ahead\r\n")
        return _wait_until_gone(connection, done)

    return converse


def stalling_https(tls: TlsFiles, stall: str) -> Converse:
    """An HTTPS peer that stalls at ``stall``: ``handshake`` (accepts the connection, never
    answers the TLS handshake) or ``headers`` (reads the request, then sends the status line
    and one header line a byte at a time, for ever)."""
    def converse(connection: socket.socket, done: threading.Event) -> None:
        if stall == "handshake":
            return _wait_until_gone(connection, done)
        with tls.server_context().wrap_socket(connection, server_side=True) as secured:
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = secured.recv(4096)
                if not chunk:
                    return None
                received += chunk
            secured.sendall(b"HTTP/1.1 200 OK\r\nX-Stalling: ")
            return _drip(secured, done, b"a")

    return converse


def finishes_within(seconds: float, call: Callable[[], T]) -> T:
    """``call()``'s result (or its exception, raised here) if it returns within ``seconds``;
    else the test fails at once, rather than hang, leaving the call to its daemon thread."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still running after {seconds} s")
    [(returned, value)] = outcome
    if not returned:
        raise value
    result: T = value
    return result


@dataclass
class Notified:
    """A vault whose alerts go to a live HTTPS receiver and SMTP server (``notified``)."""

    rt: Runtime
    clock: ManualClock
    receiver: Receiver
    smtp: SmtpServer
