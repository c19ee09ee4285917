"""The CLI's HTTPS client (cli/client.py), through the real executable: where and how the
credentials are kept, https only, the server's certificate verified, clean errors when the
server cannot be reached or refuses the token, and requests marked as coming from the CLI."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from sellervault.audit.models import EventRow
from tests.cli.helpers import Cli, Result, mode
from tests.support import ADMIN_EMAIL, Server

TENANT = "acme"
MISSING_ORDER = "999-0000000-0000001"


@dataclass
class Service:
    key: str
    workdir: Path


@pytest.fixture(scope="module")
def service(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Service:
    key = server.create_service(server.admin_token(), "acme dashboards",
                                [{"role": "analyst", "tenant": TENANT}])
    return Service(key, tmp_path_factory.mktemp("cli-client"))


def login(cli: Cli, server_url: str, key: str, *extra: str | Path) -> Result:
    return cli.run("login", "--server", server_url, *extra, "--api-key-stdin",
                   stdin=key + "\n")


def logged_in(server: Server, service: Service, name: str) -> Cli:
    """A shell logged in as the service (in-process: the subprocess login has its own test)."""
    cli = Cli(service.workdir / name)
    result = cli.invoke("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                        "--api-key-stdin", stdin=service.key + "\n")
    assert result.code == 0, result
    return cli


def rewrite_credentials(cli: Cli, **changes: str) -> None:
    stored = cli.credentials()
    stored.update(changes)
    cli.credentials_file.write_text(json.dumps(stored))


def assert_clean_failure(result: Result) -> None:
    assert result.code == 1, result
    assert result.stderr.startswith("error: "), result
    assert "Traceback" not in result.output


def test_credentials_file_is_owner_only_even_over_a_loose_one(server: Server,
                                                              service: Service) -> None:
    cli = Cli(service.workdir / "loose")
    cli.credentials_file.parent.mkdir(parents=True)
    cli.credentials_file.write_text("{}")
    cli.credentials_file.chmod(0o644)
    result = login(cli, server.base_url, service.key, "--ca-cert", server.ca_file)
    assert result.code == 0, result
    assert str(cli.credentials_file) in result.stdout
    assert mode(cli.credentials_file) == 0o600
    assert set(cli.credentials()) == {"server", "ca_cert", "token"}
    assert cli.credentials()["token"] == service.key
    assert not cli.credentials_file.with_name("cli.json.tmp").exists()


def test_plaintext_server_is_refused_before_any_connection(service: Service) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        cli = Cli(service.workdir / "plaintext")
        as_service = login(cli, f"http://127.0.0.1:{port}", service.key)
        as_person = cli.invoke("login", "--server", f"http://127.0.0.1:{port}", "--email",
                               ADMIN_EMAIL, "--totp", "123456", "--password-stdin",
                               stdin="a password never sent\n")
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected: the credentials never left the machine
    finally:
        listener.close()
    for result in (as_service, as_person):
        assert_clean_failure(result)
        assert "the server address must be https://" in result.stderr
        assert "a password never sent" not in result.output
    assert not cli.credentials_file.exists()


def test_a_stored_plaintext_server_is_refused(server: Server, service: Service) -> None:
    cli = logged_in(server, service, "downgraded")
    rewrite_credentials(cli, server=server.base_url.replace("https://", "http://"))
    result = cli.invoke("orders", "get", TENANT, MISSING_ORDER)
    assert_clean_failure(result)
    assert "the server address must be https://" in result.stderr


def test_an_untrusted_certificate_is_refused(server: Server, service: Service) -> None:
    cli = Cli(service.workdir / "untrusted")
    result = cli.invoke("login", "--server", server.base_url,  # no --ca-cert: system CAs
                        "--api-key-stdin", stdin=service.key + "\n")
    assert_clean_failure(result)
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr
    assert not cli.credentials_file.exists()


def test_a_missing_ca_certificate_is_a_usage_error(server: Server, service: Service) -> None:
    cli = Cli(service.workdir / "no-ca")
    result = cli.invoke("login", "--server", server.base_url, "--ca-cert",
                        service.workdir / "nope.crt", "--api-key-stdin",
                        stdin=service.key + "\n")
    assert result.code == 2, result
    assert "does not exist" in result.stderr
    assert not cli.credentials_file.exists()


def test_a_relative_ca_certificate_works_from_another_directory(
        server: Server, service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = Cli(service.workdir / "relative")
    monkeypatch.chdir(server.ca_file.parent)
    result = cli.invoke("login", "--server", server.base_url, "--ca-cert", server.ca_file.name,
                        "--api-key-stdin", stdin=service.key + "\n")
    assert result.code == 0, result
    assert cli.credentials()["ca_cert"] == str(server.ca_file.resolve())
    monkeypatch.chdir(service.workdir)
    elsewhere = cli.invoke("orders", "get", TENANT, MISSING_ORDER)
    assert_clean_failure(elsewhere)
    assert "not_found" in elsewhere.stderr  # it got through TLS and authentication


def test_an_unreachable_server_fails_cleanly(server: Server, service: Service) -> None:
    cli = logged_in(server, service, "unreachable")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    rewrite_credentials(cli, server=f"https://127.0.0.1:{closed_port}")
    result = cli.invoke("orders", "get", TENANT, MISSING_ORDER)
    assert_clean_failure(result)
    assert "Connection refused" in result.stderr


def test_a_forged_token_is_unauthenticated(server: Server, service: Service) -> None:
    cli = logged_in(server, service, "forged")
    rewrite_credentials(cli, token="svk_forged")
    result = cli.invoke("orders", "get", TENANT, MISSING_ORDER)
    assert_clean_failure(result)
    assert "unauthenticated" in result.stderr
    assert "svk_forged" not in result.output


def test_not_logged_in(service: Service) -> None:
    result = Cli(service.workdir / "never").invoke("orders", "get", TENANT, MISSING_ORDER)
    assert_clean_failure(result)
    assert "not logged in: run `sellervault login` first" in result.stderr


def test_requests_are_recorded_as_coming_from_the_cli(server: Server, service: Service) -> None:
    cli = logged_in(server, service, "channel")
    with server.runtime.store.transaction() as session:
        before = session.scalar(select(EventRow.seq).order_by(EventRow.seq.desc()).limit(1))
    result = cli.invoke("orders", "get", TENANT, MISSING_ORDER)
    assert result.code == 1, result
    with server.runtime.store.transaction() as session:
        rows = session.scalars(select(EventRow).where(EventRow.seq > before)).all()
    reads = [row for row in rows if row.action == "orders:read"]
    assert reads and all(row.channel == "cli" for row in reads), [
        (row.action, row.channel) for row in rows]
