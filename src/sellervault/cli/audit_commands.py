"""Client commands for the security log (role ``security-officer`` or ``auditor``): export
it for a SIEM, and record and list reviews. Each page read and each review is a security
event of its own, written by the server."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from sellervault.audit.ocsf import to_ocsf
from sellervault.cli.client import ClientError, checked, session_client
from sellervault.cli.common import call, console, err, fail

PAGE = 1000


class Format(StrEnum):
    JSONL = "jsonl"
    OCSF = "ocsf"


def _pages(client: httpx.Client, filters: dict[str, str]) -> Iterator[list[dict[str, Any]]]:
    """The log, a page at a time, following the cursor: constant memory however long."""
    after = 0
    while True:
        page = checked(client.get("/audit/events",
                                  params={**filters, "after": after, "limit": PAGE}))
        yield page["events"]
        if page["next_cursor"] is None:
            return
        after = page["next_cursor"]


@contextmanager
def _destination(output: Path | None) -> Iterator[IO[str]]:
    """Standard output, or ``output`` written owner-only beside it and renamed into place
    when complete: an interrupted export leaves no file that looks whole."""
    if output is None:
        yield sys.stdout
        return
    # A new file of our own (O_EXCL: never an existing file or a planted symlink), 0600.
    descriptor, name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.",
                                        suffix=".partial")
    partial = Path(name)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            yield stream
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)


def audit_export(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write here (owner-only); default: standard output.")] = None,
    form: Annotated[Format, typer.Option(
        "--format", help="jsonl: the events as the API gives them, one per line; ocsf: "
                         "OCSF 1.3.0 (API Activity, Authentication), one per line.")]
    = Format.JSONL,
    since: Annotated[str | None, typer.Option(help="From this time (ISO 8601, with zone).")]
    = None,
    until: Annotated[str | None, typer.Option(help="Before this time.")] = None,
    actor: Annotated[str | None, typer.Option(help="One account's events.")] = None,
    action: Annotated[str | None, typer.Option(help="One action's events.")] = None,
    outcome: Annotated[str | None, typer.Option(help="success, denied, failed, error.")]
    = None,
    tenant: Annotated[str | None, typer.Option(help="One tenant's events.")] = None,
    buyer: Annotated[str | None, typer.Option(help="One buyer's events (byr_...).")] = None,
) -> None:
    """Export the security log for a SIEM, in chain order, streamed page by page (each page
    read is an audit:read event); a progress count on standard error."""
    filters = {name: value for name, value in (
        ("since", since), ("until", until), ("actor", actor), ("action", action),
        ("outcome", outcome), ("tenant", tenant), ("buyer", buyer)) if value is not None}
    written = 0
    try:
        with session_client() as client, _destination(output) as stream, Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                console=err, transient=True, disable=output is None) as progress:
            task = progress.add_task("0 events", total=None)
            for events in _pages(client, filters):
                for event in events:
                    record = to_ocsf(event) if form is Format.OCSF else event
                    stream.write(json.dumps(record, separators=(",", ":")) + "\n")
                written += len(events)
                progress.update(task, description=f"{written} events")
    except (ClientError, httpx.HTTPError, OSError) as exc:
        raise fail(str(exc)) from None
    if output is not None:
        err.print(escape(f"{written} events written to {output} ({form.value})"),
                  highlight=False)


def audit_review(
    up_to: Annotated[int, typer.Option("--up-to", min=1,
                                       help="The last event you reviewed (its seq).")],
) -> None:
    """Record that you reviewed the log up to an event (further than the last review)."""
    review = call("POST", "/audit/reviews", json={"up_to_seq": up_to})
    console.print(escape(f"Review {review['number']}: up to event {review['up_to_seq']}, "
                         f"{review['reviewed_at']}."), highlight=False)


def audit_reviews(
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """The reviews of the log, newest first: number, reviewer, last event, time."""
    listed = call("GET", "/audit/reviews")["reviews"]
    if as_json:
        print(json.dumps(listed))
        return
    for review in listed:
        console.print(escape(f"{review['number']:>5}  {review['reviewed_at']}  up to "
                             f"{review['up_to_seq']}  by {review['reviewer_id']}"),
                      highlight=False)


def register(audit_app: typer.Typer) -> None:
    audit_app.command("export")(audit_export)
    audit_app.command("review")(audit_review)
    audit_app.command("reviews")(audit_reviews)
