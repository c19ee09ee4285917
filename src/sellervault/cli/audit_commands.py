"""Client commands for the security log (role ``security-officer`` or ``auditor``): export
it for a SIEM, and record and list reviews. They go through the API, with the signed-in
account's token, like every command that reads what the service holds: the server decides
who may, and writes the events (one ``audit:export`` with the count per export, one
``audit:review`` per review). ``audit verify`` and ``audit prove`` are the operator's, on
the service's own host, because they check the log with its key."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated

import httpx
import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from sellervault.audit.exporting import COUNT_HEADER, THROUGH_HEADER, ExportFormat
from sellervault.cli.client import ClientError, checked, session_client
from sellervault.cli.common import call, console, err, fail, owner_only_file

EXPORT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
"""The server counts what an export holds before its first line (a scan of the log), and a
page of a long filtered export can be far into it: minutes, not the usual 30 s, per read."""


@contextmanager
def _destination(output: Path | None) -> Iterator[IO[str]]:
    """Standard output, or ``output`` written owner-only beside it and renamed into place
    when complete: an interrupted export leaves no file that looks whole."""
    if output is None:
        yield sys.stdout
        return
    with owner_only_file(output) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8")
        try:
            yield text
        finally:
            text.flush()
            text.detach()  # (the file stays open for owner_only_file to sync and rename)


def audit_export(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write here (owner-only, renamed into place only when "
                               "complete); default: standard output.")] = None,
    form: Annotated[ExportFormat, typer.Option(
        "--format", help="jsonl: the events as the API gives them (every field, seq, "
                         "prev_hash and hash included), one per line; ocsf: OCSF 1.3.0 "
                         "(API Activity, Authentication), one per line.")]
    = ExportFormat.JSONL,
    since: Annotated[str | None, typer.Option(help="From this time (ISO 8601, with zone).")]
    = None,
    until: Annotated[str | None, typer.Option(help="Before this time.")] = None,
    actor: Annotated[str | None, typer.Option(help="One account's events.")] = None,
    action: Annotated[str | None, typer.Option(help="One action's events.")] = None,
    outcome: Annotated[str | None, typer.Option(help="success, denied, failed, error.")]
    = None,
    tenant: Annotated[str | None, typer.Option(help="One tenant's events.")] = None,
    buyer: Annotated[str | None, typer.Option(help="One buyer's events (byr_...).")] = None,
    after: Annotated[int, typer.Option(
        "--after", min=0, help="Only the events after this seq: for a scheduled export, the "
                               "last seq of the one before (printed when it ends).")] = 0,
) -> None:
    """Export the security log for a SIEM (security officer or auditor): the events up to
    the last one when the export began, in chain order, streamed by the server (which
    records one audit:export event with the count) and written as they arrive, in constant
    memory; a progress bar on standard error when writing to a file. Fails, leaving no
    file, if fewer events arrive than the server counted."""
    params = {name: value for name, value in (
        ("since", since), ("until", until), ("actor", actor), ("action", action),
        ("outcome", outcome), ("tenant", tenant), ("buyer", buyer)) if value is not None}
    params["format"] = form.value
    params["after"] = str(after)
    written = 0
    try:
        with session_client() as client, client.stream(
                "GET", "/audit/export", params=params, timeout=EXPORT_TIMEOUT) as response:
            if response.status_code >= 400:
                response.read()
                checked(response)
            total = int(response.headers[COUNT_HEADER])
            through = response.headers[THROUGH_HEADER]
            with _destination(output) as stream, Progress(
                    TextColumn("exporting"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True,
                    disable=output is None) as progress:
                task = progress.add_task("export", total=total)
                for line in response.iter_lines():
                    if not line:
                        continue
                    stream.write(line + "\n")
                    written += 1
                    progress.advance(task)
                if written != total:
                    raise ClientError(f"the export stopped after {written} of {total} "
                                      "events; nothing was kept")
    except (ClientError, httpx.HTTPError, OSError, KeyError, ValueError) as exc:
        raise fail(str(exc)) from None
    if output is not None:
        err.print(escape(f"{written} events written to {output} ({form.value}); the next "
                         f"export: --after {through}"), highlight=False)


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
