"""What the client commands share: where they print, how they fail, one request to the
server, and the ROLE:TENANT argument."""

from __future__ import annotations

from typing import Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from sellervault.cli.client import ClientError, checked, session_client

console = Console(soft_wrap=True)  # never hard-wrap paths, secrets or messages
err = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print ``message`` as an error; the exit (1) to raise."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(1)


def call(method: str, path: str, *, raw: bool = False, **kwargs: Any) -> Any:
    """One request with the saved credentials; its JSON (``raw``: its bytes), or exit 1
    with the server's error code and message."""
    try:
        with session_client() as client:
            return checked(client.request(method, path, **kwargs), raw=raw)
    except (ClientError, httpx.HTTPError) as exc:
        raise fail(str(exc)) from None


def parse_grant(text: str) -> dict[str, str]:
    role, sep, tenant = text.partition(":")
    if not sep or not role or not tenant:
        raise fail("a grant is ROLE:TENANT, e.g. pii-reader:acme or auditor:*")
    return {"role": role, "tenant": tenant}
