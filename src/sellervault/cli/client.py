"""The CLI's HTTPS client: the server's certificate is verified, credentials stay owner-only.

`sellervault login` stores the server address, the CA certificate to trust and the bearer
token in ``$XDG_CONFIG_HOME/sellervault/cli.json`` (mode 600). Every request says it comes
from the CLI, so the server's security events carry the right channel.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from sellervault.web.tls import client_context

DEFAULT_SERVER = "https://127.0.0.1:8443"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class ClientError(Exception):
    """A request failed; the message is the server's error code and message, never a body."""


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sellervault" / "cli.json"


@dataclass
class Credentials:
    server: str
    ca_cert: str | None
    token: str

    def save(self) -> Path:
        path = config_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle)
        os.replace(tmp, path)
        return path

    def forget(self) -> None:
        """Remove the saved token (after signing out: it is dead, and still a secret)."""
        config_path().unlink(missing_ok=True)

    @classmethod
    def load(cls) -> Credentials:
        path = config_path()
        if not path.exists():
            raise ClientError("not logged in: run `sellervault login` first")
        return cls(**json.loads(path.read_text()))


def _https_only(server: str) -> str:
    if not server.startswith("https://"):
        raise ClientError("the server address must be https://")
    return server.rstrip("/")


def open_client(server: str, ca_cert: str | None, token: str | None = None) -> httpx.Client:
    headers = {"X-SellerVault-Client": "cli", "User-Agent": "sellervault-cli"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=_https_only(server) + "/api/v1", headers=headers,
                        verify=client_context(Path(ca_cert) if ca_cert else None),
                        timeout=TIMEOUT)


def session_client() -> httpx.Client:
    credentials = Credentials.load()
    return open_client(credentials.server, credentials.ca_cert, credentials.token)


def checked(response: httpx.Response, raw: bool = False) -> Any:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            detail = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            detail = f"HTTP {response.status_code}"
        raise ClientError(detail)
    if raw:
        return response.content
    if response.status_code == 204 or not response.content:
        return None
    return response.json()
