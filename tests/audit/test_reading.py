"""audit.reading: pages of the log for a reader, on SQLite and PostgreSQL. A filter keeps
exactly the events that match every criterion; paging by cursor walks every match once, in
chain order, and says when it is done; each read is itself an event."""

from __future__ import annotations

from sellervault.access.actions import Action
from sellervault.audit import reading
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel, Outcome
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
