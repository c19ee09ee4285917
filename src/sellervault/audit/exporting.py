"""Exporting the security log for a SIEM: the server streams it, and the export is an event.

An export is decided, counted and recorded by the server, not by whoever asks for it: the
``audit:export`` event names the last event the export holds (``target_id``: the chain's
head when it began, so that what is written meanwhile, the export's own event included,
is left for the next one), how many events it holds (``count``) and its format and the
names of the filters used (``criteria``: never their values, which may name an account).
An analyst in the SIEM sees who took a copy of how much of the log, as one event, whichever
client asked.

The events are then read a page at a time (``PAGE``) after a cursor, each page in a short
snapshot of its own (a read that never takes SQLite's write lock) that is closed before its
lines are handed on: however long the log and however slow the reader, the server holds one
page and no transaction. Lines are JSON,
one event each: as the audit API gives them (``jsonl``: every field, ``seq``, ``prev_hash``
and ``hash`` included) or mapped to OCSF (``audit.ocsf``). Events hold no PII, so neither
does an export.

Counting first costs a scan of the log before the first line, which is what an export of
the whole log costs anyway; it is done in a snapshot of its own, before the event is
written, so that no writer waits on it (writing an event locks the chain's head).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, select

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Outcome, TargetType
from sellervault.audit.models import ChainHead, EventRow
from sellervault.audit.ocsf import to_ocsf
from sellervault.audit.reading import EventFilter, event_fields, filter_names
from sellervault.audit.writing import HEAD_ID
from sellervault.store.engine import Store

_HEAD_SEQ = select(ChainHead.seq).where(ChainHead.id == HEAD_ID)
PAGE = 1000
"""Events read per transaction (and held at once) while streaming an export."""
COUNT_HEADER = "X-SellerVault-Export-Count"
THROUGH_HEADER = "X-SellerVault-Export-Through"
"""Response headers: how many events the export holds, and the last one's ``seq``; the
client knows from them whether it received all of it."""


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    """The events as the audit API gives them, one JSON object a line."""
    OCSF = "ocsf"
    """OCSF 1.3.0 (``audit.ocsf``), one JSON object a line."""


@dataclass(frozen=True, slots=True)
class Export:
    """An export as recorded: what it holds, fixed when it began."""

    matching: EventFilter
    form: ExportFormat
    after_seq: int
    """Where it starts: the events after this one (a scheduled export passes the last
    ``seq`` of the one before, the ``X-SellerVault-Export-Through`` it was given)."""
    through_seq: int
    """The last event it can hold: the chain's head when it began."""
    count: int
    """How many events it holds: those up to ``through_seq`` that match."""


def criteria(matching: EventFilter, form: ExportFormat, after_seq: int = 0) -> str:
    """The format and the names of the filters given (``ocsf:after,action,since``): what
    the export event says of what was asked, with no value (an actor's id is not in it;
    where an export after a cursor starts is in the count and ``target_id`` already)."""
    given = filter_names(matching, after_seq)
    return f"{form.value}:{given}" if given else form.value


def begin(store: Store, auditor: Auditor, matching: EventFilter, form: ExportFormat,
          after_seq: int = 0) -> Export:
    """Fix what the export holds, count it and record the ``audit:export`` event, before a
    line is sent (nothing leaves that the log does not know about)."""
    with store.snapshot() as connection:
        through = connection.execute(_HEAD_SEQ).scalar() or 0
        count = connection.execute(select(func.count()).select_from(EventRow).where(
            EventRow.seq > after_seq, EventRow.seq <= through, *matching.where())).scalar() or 0
    with store.transaction() as session:
        auditor.record(session, Action.AUDIT_EXPORT, Outcome.SUCCESS,
                       target_type=TargetType.SECURITY_EVENT, target_id=str(through),
                       count=count, criteria=criteria(matching, form, after_seq),
                       buyer=matching.buyer)
    return Export(matching, form, after_seq, through, count)


def chunks(store: Store, export: Export, page: int | None = None) -> Iterator[str]:
    """The export's lines, a page of them per chunk, in chain order. Lazy: a page is read
    only when the one before has been taken. ``page``: events a page (default ``PAGE``,
    read at each call)."""
    page = PAGE if page is None else page
    after = export.after_seq
    while after < export.through_seq:
        with store.snapshot() as connection:
            rows = connection.execute(
                select(EventRow)
                .where(EventRow.seq > after, EventRow.seq <= export.through_seq,
                       *export.matching.where())
                .order_by(EventRow.seq).limit(page)).all()
        events = [event_fields(row) for row in rows]
        if not events:
            return
        yield "".join(json.dumps(to_ocsf(event) if export.form is ExportFormat.OCSF
                                 else event, separators=(",", ":")) + "\n"
                      for event in events)
        if len(events) < page:
            return
        after = events[-1]["seq"]
