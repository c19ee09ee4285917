"""audit.exporting: an export is fixed, counted and recorded as one audit:export event before
a line leaves; its lines are every matching event up to the head it began at, in chain order,
read a page at a time and only as they are taken (over many pages here), as JSON lines
(every field, the chain links included) or as OCSF."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select

from sellervault.access.actions import Action
from sellervault.audit import exporting
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel, Outcome
from sellervault.audit.exporting import ExportFormat
from sellervault.audit.models import EventRow
from sellervault.audit.reading import EventFilter
from sellervault.runtime import Runtime

READER = Actor(Channel.API, actor_id="acc_auditor", source_ip="203.0.113.7",
               request_id="req-export")


def _auditor(rt: Runtime) -> Auditor:
    return Auditor(rt.audit, READER)


def _write(rt: Runtime, n: int) -> None:
    """``n`` events, every third one denied, in one transaction."""
    writer = Auditor(rt.audit, Actor(Channel.API, actor_id="acc_writer",
                                     source_ip="198.51.100.4", request_id="req-w"))
    with rt.store.transaction() as session:
        for i in range(n):
            writer.record(session, Action.ORDERS_READ,
                          Outcome.DENIED if i % 3 == 0 else Outcome.SUCCESS,
                          tenant_id="acme", status=403 if i % 3 == 0 else 200)


def _lines(chunks: Iterator[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for chunk in chunks for line in chunk.splitlines()]


def _exports(rt: Runtime) -> list[EventRow]:
    with rt.store.transaction() as session:
        return list(session.scalars(select(EventRow).where(
            EventRow.action == Action.AUDIT_EXPORT.value).order_by(EventRow.seq)))


def test_an_export_is_one_event_with_its_count_before_a_line(runtime: Runtime) -> None:
    _write(runtime, 30)
    export = exporting.begin(runtime.store, _auditor(runtime), EventFilter(),
                             ExportFormat.JSONL)
    [recorded] = _exports(runtime)
    assert (recorded.count, recorded.target_id) == (export.count, str(export.through_seq))
    assert (recorded.actor_id, recorded.outcome, recorded.criteria) == (
        "acc_auditor", "success", "jsonl")
    assert recorded.seq == export.through_seq + 1  # after what it holds: not in it
    _write(runtime, 5)  # written while it streams: left for the next export
    events = _lines(exporting.chunks(runtime.store, export, page=7))
    assert [e["seq"] for e in events] == list(range(1, export.through_seq + 1))
    assert len(events) == export.count
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(events))
    assert set(events[0]) >= {"seq", "occurred_at", "channel", "action", "outcome",
                              "actor_id", "tenant_id", "source_ip", "request_id", "status",
                              "count", "reason", "criteria", "buyer", "prev_hash", "hash"}


def test_a_filtered_export_over_many_pages_holds_exactly_the_matching_events(
        runtime: Runtime) -> None:
    _write(runtime, 40)
    matching = EventFilter(action=Action.ORDERS_READ, outcome=Outcome.DENIED,
                           tenant_id="acme")
    export = exporting.begin(runtime.store, _auditor(runtime), matching, ExportFormat.OCSF)
    assert export.count == 14  # 0, 3, ..., 39
    assert _exports(runtime)[-1].criteria == "ocsf:action,outcome,tenant_id"
    events = _lines(exporting.chunks(runtime.store, export, page=3))
    assert len(events) == 14
    assert all((e["class_uid"], e["activity_id"], e["status_id"]) == (6003, 2, 2)
               for e in events)
    seqs = [int(e["metadata"]["uid"]) for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 14


def test_nothing_matching_is_an_empty_export_still_recorded(runtime: Runtime) -> None:
    export = exporting.begin(runtime.store, _auditor(runtime),
                             EventFilter(actor_id="acc_nobody"), ExportFormat.JSONL)
    assert export.count == 0
    assert list(exporting.chunks(runtime.store, export)) == []
    assert _exports(runtime)[-1].count == 0


def test_pages_are_read_only_as_they_are_taken(runtime: Runtime) -> None:
    """Constant memory: one page read per chunk taken, never the whole log at once. The
    statements are counted on the real engine, not imitated."""
    _write(runtime, 25)
    export = exporting.begin(runtime.store, _auditor(runtime), EventFilter(),
                             ExportFormat.JSONL)
    reads: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "security_events" in statement:
            reads.append(statement)

    event.listen(runtime.store.engine, "before_cursor_execute", count)
    try:
        chunks = exporting.chunks(runtime.store, export, page=5)
        assert reads == []  # nothing read before the first chunk is asked for
        first = next(chunks)
        assert len(first.splitlines()) == 5 and len(reads) == 1
        next(chunks)
        assert len(reads) == 2
        rest = list(chunks)
    finally:
        event.remove(runtime.store.engine, "before_cursor_execute", count)
    assert sum(len(chunk.splitlines()) for chunk in rest) == export.count - 10
    assert len(reads) <= 2 + len(rest) + 1  # a page per chunk (and one that finds none)


@pytest.mark.parametrize(("given", "expected"), [
    (EventFilter(), "jsonl"),
    (EventFilter(since="2026-01-01T00:00:00.000000Z", actor_id="acc_x"), "jsonl:since,actor_id"),
])
def test_criteria_name_the_filters_never_their_values(given: EventFilter,
                                                      expected: str) -> None:
    assert exporting.criteria(given, ExportFormat.JSONL) == expected


def test_a_scheduled_export_starts_after_the_last_one(runtime: Runtime) -> None:
    """The next export passes the last one's ``through_seq``: every event exactly once
    across the two, the first export's own event in the second."""
    _write(runtime, 12)
    first = exporting.begin(runtime.store, _auditor(runtime), EventFilter(), ExportFormat.JSONL)
    got = _lines(exporting.chunks(runtime.store, first, page=5))
    _write(runtime, 4)
    second = exporting.begin(runtime.store, _auditor(runtime), EventFilter(),
                             ExportFormat.JSONL, after_seq=first.through_seq)
    more = _lines(exporting.chunks(runtime.store, second, page=5))
    assert second.count == len(more) == 5  # the first export's event, then the four
    assert [e["seq"] for e in got + more] == list(range(1, second.through_seq + 1))
    assert more[0]["action"] == Action.AUDIT_EXPORT.value
    assert _exports(runtime)[-1].criteria == "jsonl:after"
