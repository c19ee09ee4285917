"""The listener speaks TLS only: 1.2 and 1.3 with the Mozilla intermediate ciphers, HSTS on
every response; plaintext HTTP and TLS 1.0/1.1 get nothing."""

from __future__ import annotations

import socket
import ssl
import threading
from urllib.parse import urlsplit

import pytest

from tests.support import Server

pytestmark = pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")


def _address(server: Server) -> tuple[str, int]:
    parts = urlsplit(server.base_url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _handshake(server: Server, version: ssl.TLSVersion, ciphers: str | None = None) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(server.ca_file))
    context.minimum_version = version
    context.maximum_version = version
    if ciphers:
        context.set_ciphers(ciphers)
    with socket.create_connection(_address(server), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        negotiated = tls.version()
    assert negotiated is not None
    return negotiated


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_modern_tls_handshakes_succeed(server: Server, version: ssl.TLSVersion) -> None:
    assert _handshake(server, version) == {
        ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]


LEGACY = [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1]


def _legacy_client(ca_file: str, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca_file)
    context.minimum_version = context.maximum_version = version
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


@pytest.mark.parametrize("version", LEGACY)
def test_legacy_client_is_able_to_speak_legacy_tls(server: Server,
                                                   version: ssl.TLSVersion) -> None:
    """Control: against a deliberately permissive server using the same certificate, the
    legacy client used below does complete a handshake, so its failure against SellerVault
    is the server's refusal, not the client's inability."""
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.load_cert_chain(str(server.ca_file), str(server.ca_file.parent / "server.key"))
    permissive.minimum_version = version
    permissive.set_ciphers("ALL:@SECLEVEL=0")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        outcome: dict[str, str | None] = {}

        def accept() -> None:
            connection, _ = listener.accept()
            with permissive.wrap_socket(connection, server_side=True) as tls:
                outcome["server"] = tls.version()

        thread = threading.Thread(target=accept)
        thread.start()
        client = _legacy_client(str(server.ca_file), version)
        with socket.create_connection(listener.getsockname(), timeout=5) as raw, \
                client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            negotiated = tls.version()
        thread.join(timeout=5)
    assert negotiated == outcome["server"] and negotiated in ("TLSv1", "TLSv1.1")


@pytest.mark.parametrize("version", LEGACY)
def test_legacy_tls_handshakes_fail(server: Server, version: ssl.TLSVersion) -> None:
    client = _legacy_client(str(server.ca_file), version)
    with pytest.raises((ssl.SSLError, ConnectionResetError)), \
            socket.create_connection(_address(server), timeout=5) as raw, \
            client.wrap_socket(raw, server_hostname="127.0.0.1"):
        pass


def test_weak_cipher_is_refused(server: Server) -> None:
    with pytest.raises(ssl.SSLError):
        _handshake(server, ssl.TLSVersion.TLSv1_2, ciphers="AES128-SHA:@SECLEVEL=0")


def test_plaintext_http_gets_no_http_answer(server: Server) -> None:
    request = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with socket.create_connection(_address(server), timeout=5) as raw:
        raw.sendall(request)
        received = b""
        try:
            while chunk := raw.recv(4096):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert not received.startswith(b"HTTP/")
    assert b"status" not in received


def test_every_response_carries_hsts(server: Server) -> None:
    with server.client() as client:
        ok = client.get("/health")
        missing = client.get("/no-such-route")
    for response in (ok, missing):
        assert response.headers["strict-transport-security"] == \
            "max-age=63072000; includeSubDomains"
        assert response.headers["cache-control"] == "no-store"
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_certificate_names_localhost_and_loopback(server: Server) -> None:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    for hostname in ("localhost", "127.0.0.1"):
        with socket.create_connection(_address(server), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=hostname) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
