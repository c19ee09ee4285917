"""What the client commands share: where they print, how they fail, one request to the
server, the files they write, and the ROLE:TENANT argument."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

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


@contextmanager
def owner_only_file(output: Path) -> Iterator[BinaryIO]:
    """``output`` written owner-only beside it and renamed into place only when the block
    ends without an exception: an interrupted or refused download leaves no file that looks
    whole. A new file of our own (``mkstemp``: O_EXCL, never an existing file or a planted
    symlink), mode 0600."""
    descriptor, name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.",
                                        suffix=".partial")
    partial = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            os.fchmod(stream.fileno(), 0o600)
            yield stream
            stream.flush()
            os.fsync(stream.fileno())  # (on disk before it takes the final name)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
