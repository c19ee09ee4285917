"""audit.reading: pages of the log for a reader, on SQLite and PostgreSQL. A filter keeps
exactly the events that match every criterion; paging by cursor walks every match once, in
chain order, and says when it is done; each read is itself an event."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import pytest
from sqlalchemy import event, select

from sellervault.access.actions import Action
from sellervault.audit import reading
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel, Outcome
from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.runtime import Runtime

READER = Actor(Channel.API, actor_id="acc_reader")


def write(rt: Runtime, actor_id: str, action: Action, outcome: Outcome, tenant: str) -> None:
    auditor = Auditor(rt.audit, Actor(Channel.API, actor_id=actor_id))
    with rt.store.transaction() as session:
        auditor.record(session, action, outcome, tenant_id=tenant)


def test_filters_keep_exactly_the_matching_events(runtime: Runtime, clock: ManualClock) -> None:
    clock.advance(1)  # init's events are before the range
    start = runtime.audit.occurred_at()
    for n in range(12):
        write(runtime, f"acc_{n % 3}", Action.ORDERS_READ if n % 2 else Action.ORDERS_REVEAL,
              Outcome.DENIED if n % 4 == 0 else Outcome.SUCCESS, "acme" if n < 6 else "globex")
        clock.advance(60)
    middle = runtime.audit.occurred_at()
    matching = reading.EventFilter(since=start, actor_id="acc_0", tenant_id="acme")
    page = reading.read_events(runtime.store, Auditor(runtime.audit, READER), 0, 100, matching)
    assert [(e["actor_id"], e["tenant_id"]) for e in page.events] == [("acc_0", "acme")] * 2
    denied = reading.read_events(runtime.store, Auditor(runtime.audit, READER), 0, 100,
                                 reading.EventFilter(outcome=Outcome.DENIED,
                                                     action=Action.ORDERS_REVEAL))
    assert len(denied.events) == 3
    assert all(e["outcome"] == "denied" and e["action"] == "orders:reveal"
               for e in denied.events)
    late = reading.read_events(runtime.store, Auditor(runtime.audit, READER), 0, 100,
                               reading.EventFilter(since=start, until=middle))
    assert [e["actor_id"] for e in late.events] == [f"acc_{n % 3}" for n in range(12)]


def test_a_cursor_walks_every_match_once_and_ends(runtime: Runtime) -> None:
    for _ in range(7):
        write(runtime, "acc_walker", Action.ORDERS_READ, Outcome.SUCCESS, "acme")
    matching = reading.EventFilter(actor_id="acc_walker")
    seen: list[int] = []
    cursor: int | None = 0
    pages = 0
    while cursor is not None:
        page = reading.read_events(runtime.store, Auditor(runtime.audit, READER), cursor, 3,
                                   matching)
        seen.extend(e["seq"] for e in page.events)
        cursor = page.next_cursor
        pages += 1
    assert len(seen) == 7 and seen == sorted(seen) and pages == 3


def _reads(rt: Runtime) -> list[tuple[str | None, str | None, str | None, int | None]]:
    with rt.store.transaction() as session:
        return [(row.criteria, row.target_id, row.buyer, row.count) for row in session.scalars(
            select(EventRow).where(EventRow.action == Action.AUDIT_READ.value)
            .order_by(EventRow.seq))]


def test_a_read_records_the_filters_the_cursor_and_the_buyer_looked_for(
        runtime: Runtime) -> None:
    """Who looked for whom: the filters' names (never an actor's id or a time), where the
    page started, and the buyer's pseudonym, the one value that names whom a reader was
    after (an event may hold it: it is no PII)."""
    buyer = "byr_" + "a" * 32
    write(runtime, "acc_target", Action.ORDERS_READ, Outcome.SUCCESS, "acme")
    reader = Auditor(runtime.audit, READER)
    reading.read_events(runtime.store, reader, 0, 10)
    reading.read_events(runtime.store, reader, 2, 10, reading.EventFilter(
        actor_id="acc_target", buyer=buyer, since="2026-01-01T00:00:00.000000Z"))
    first, second = _reads(runtime)
    assert first[:3] == (None, None, None) and second == ("after,since,actor_id,buyer", "2",
                                                          buyer, 0)
    assert "acc_target" not in repr(_reads(runtime))


def test_the_page_is_read_without_sqlites_write_lock(runtime: Runtime) -> None:
    """A filtered read is a scan of the log: it must not hold up every writer, nor wait
    for one. With another connection holding the write lock, the page is read at once;
    only the read's own event waits for the lock, and is written once it is released."""
    if runtime.store.dialect != "sqlite":
        pytest.skip("SQLite's database-wide write lock; PostgreSQL reads never take one")
    write(runtime, "acc_target", Action.ORDERS_READ, Outcome.SUCCESS, "acme")
    scans: list[float] = []

    def note_scan(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT") and "FROM security_events" in statement:
            scans.append(time.monotonic())

    path = runtime.settings.effective_database_url().split("///", 1)[1]
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    pages: list[reading.Page] = []
    event.listen(runtime.store.engine, "before_cursor_execute", note_scan)
    try:
        worker = threading.Thread(target=lambda: pages.append(reading.read_events(
            runtime.store, Auditor(runtime.audit, READER), 0, 100)))
        worker.start()
        time.sleep(1.0)
        released = time.monotonic()
        holder.execute("COMMIT")
        worker.join(timeout=30)
    finally:
        event.remove(runtime.store.engine, "before_cursor_execute", note_scan)
        holder.close()
    assert not worker.is_alive() and len(pages) == 1
    assert scans and scans[0] < released, "the page waited for the writer's lock"
    assert pages[0].events[-1]["actor_id"] == "acc_target"
    assert len(_reads(runtime)) == 1  # the read's event, once the lock was free
