"""Subscribers hear of each committed event once, in chain order, and can never hurt the log.

- Every event this process commits reaches each subscriber exactly once, in the order of the
  chain, whichever way it was written (in a transaction, standalone, batched in the event
  loop on PostgreSQL) and however many writers race; an event whose transaction rolled back
  never does.
- A subscriber that raises is logged and gets the next event; one that is slow delays only
  itself: the writer returns at once, the other subscribers keep up, the event is committed.
- What a subscriber receives is the event's typed fields: no PII to receive.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel, Outcome
from sellervault.audit.models import EventRow
from sellervault.audit.subscribers import CommittedEvent
from sellervault.records import service as records
from sellervault.records.spapi import map_order, validate_order
from sellervault.runtime import Runtime
from tests.support import block_event_writes, in_event_loop, unblock_event_writes

CALLER = Actor(Channel.API, actor_id="acc_0123456789abcdef", source_ip="203.0.113.9",
               request_id="req_1")


class Heard:
    """A subscriber that keeps what it hears."""

    def __init__(self) -> None:
        self.events: list[CommittedEvent] = []
        self._lock = threading.Lock()

    def __call__(self, committed: CommittedEvent) -> None:
        with self._lock:
            self.events.append(committed)

    @property
    def seqs(self) -> list[int]:
        return [committed.seq for committed in self.events]


def _committed_seqs(rt: Runtime, after: int) -> list[int]:
    with rt.store.engine.connect() as connection:
        return list(connection.scalars(select(EventRow.seq).where(EventRow.seq > after)
                                       .order_by(EventRow.seq)))


def _head(rt: Runtime) -> int:
    with rt.store.engine.connect() as connection:
        return connection.scalar(select(EventRow.seq).order_by(EventRow.seq.desc())
                                 .limit(1)) or 0


def _append(rt: Runtime, **fields: Any) -> int:
    auditor = Auditor(rt.audit, CALLER)
    return rt.store.call(auditor.append, rt.store, Action.ORDERS_READ, Outcome.SUCCESS, **fields)


def _record(rt: Runtime, *, fail: bool = False) -> None:
    auditor = Auditor(rt.audit, CALLER)
    with rt.store.transaction() as session:
        auditor.record(session, Action.AUDIT_READ, Outcome.SUCCESS)
        if fail:
            raise RuntimeError("the operation failed after its event was written")


def test_each_committed_event_is_heard_once_in_chain_order(runtime: Runtime) -> None:
    heard = Heard()
    runtime.audit.subscribe("test", heard)
    start = _head(runtime)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: _append(runtime) if i % 2 else _record(runtime), range(80)))
    assert runtime.audit.subscribers.wait_idle()
    assert heard.seqs == _committed_seqs(runtime, start)  # each once, in chain order
    assert len(heard.seqs) == 80


def test_an_event_rolled_back_with_its_operation_is_never_heard(runtime: Runtime) -> None:
    heard = Heard()
    runtime.audit.subscribe("test", heard)
    start = _head(runtime)
    with pytest.raises(RuntimeError):
        _record(runtime, fail=True)
    _record(runtime)
    assert runtime.audit.subscribers.wait_idle()
    assert heard.seqs == _committed_seqs(runtime, start)
    assert len(heard.seqs) == 1 and heard.events[0].event.action == "audit:read"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # (event loop: PG)
def test_events_batched_in_the_event_loop_are_heard_in_chain_order(runtime: Runtime) -> None:
    heard = Heard()
    runtime.audit.subscribe("test", heard)
    start = _head(runtime)
    _append(runtime)  # the process learns the head: the loop's appends then batch
    auditor = Auditor(runtime.audit, CALLER)

    async def work() -> None:
        await asyncio.gather(*[auditor.append(runtime.store, Action.ORDERS_READ, Outcome.SUCCESS)
                               for _ in range(100)])

    with ThreadPoolExecutor(2) as pool:  # blocking writers racing the loop's batches
        racing = [pool.submit(_record, runtime) for _ in range(20)]
        in_event_loop(runtime, work)
        for future in racing:
            future.result()
    assert runtime.audit.subscribers.wait_idle()
    assert heard.seqs == _committed_seqs(runtime, start)
    assert len(heard.seqs) == 121


def test_a_subscriber_that_raises_loses_nothing_and_hears_the_next_event(
        runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    failures = 0

    def fails(committed: CommittedEvent) -> None:
        nonlocal failures
        failures += 1
        raise ValueError("subscriber bug")

    heard = Heard()
    runtime.audit.subscribe("fails", fails)
    runtime.audit.subscribe("heard", heard)
    start = _head(runtime)
    first, second = _append(runtime), _append(runtime)
    assert runtime.audit.subscribers.wait_idle()
    assert failures == 2  # it was handed the second event after failing on the first
    assert heard.seqs == [first, second] == _committed_seqs(runtime, start)
    assert "subscriber fails failed" in caplog.text and "ValueError" in caplog.text


def test_a_slow_subscriber_delays_neither_the_writer_nor_the_others(runtime: Runtime) -> None:
    release = threading.Event()

    def slow(committed: CommittedEvent) -> None:
        release.wait(30)

    heard = Heard()
    runtime.audit.subscribe("slow", slow)
    runtime.audit.subscribe("heard", heard)
    start = _head(runtime)
    began = time.monotonic()
    seqs = [_append(runtime) for _ in range(5)]
    assert runtime.audit.subscribers.subscriptions[1].wait_idle(10)  # "heard" kept up
    writing_took = time.monotonic() - began
    release.set()
    assert runtime.audit.subscribers.wait_idle()
    assert heard.seqs == seqs == _committed_seqs(runtime, start)
    assert writing_took < 10  # (the slow one waits up to 30 s per event)


def test_what_a_subscriber_hears_holds_no_pii(runtime: Runtime,
                                              order_examples: list[dict[str, Any]]) -> None:
    heard = Heard()
    runtime.audit.subscribe("test", heard)
    raw = order_examples[0]
    auditor = Auditor(runtime.audit, CALLER)
    records.ingest(runtime, auditor, "acme", [map_order(validate_order(raw))])
    runtime.store.call(records.reveal, runtime, Auditor(runtime.audit, CALLER), "acme",
                       raw["AmazonOrderId"], "fulfillment")
    assert runtime.audit.subscribers.wait_idle()
    assert [committed.event.action for committed in heard.events] == [
        Action.ORDERS_INGEST, Action.KEYS_CREATE_TENANT, Action.CANARIES_REFRESH,
        Action.ORDERS_REVEAL]
    said = repr(heard.events)
    buyer = raw["BuyerInfo"]
    for value in (buyer.get("BuyerEmail"), buyer.get("BuyerName"),
                  raw["ShippingAddress"].get("AddressLine1")):
        if value:
            assert value not in said


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # (one-statement path)
def test_an_event_the_database_refuses_does_not_stop_the_delivery_of_later_ones(
        runtime: Runtime) -> None:
    """A writer that took a place and then failed settles it (nothing to deliver): before,
    the place stayed open and every later event waited behind it for good."""
    heard = Heard()
    runtime.audit.subscribe("test", heard)
    start = _head(runtime)
    _append(runtime)  # the process learns the head: the next append is one statement
    block_event_writes(runtime)
    with pytest.raises(DBAPIError):
        _append(runtime)  # refused by the database
    unblock_event_writes(runtime)
    _append(runtime)
    _append(runtime)
    assert runtime.audit.subscribers.wait_idle()
    assert heard.seqs == _committed_seqs(runtime, start)
    assert len(heard.seqs) == 3


def test_a_subscriber_that_raises_anything_goes_on_with_the_next_event(
        runtime: Runtime) -> None:
    heard: list[int] = []

    def exits(committed: CommittedEvent) -> None:
        heard.append(committed.seq)
        raise SystemExit("not a reason to stop listening")

    runtime.audit.subscribe("exits", exits)
    seqs = [_append(runtime), _append(runtime)]
    assert runtime.audit.subscribers.wait_idle()
    assert heard == seqs


def test_a_subscriber_hears_only_the_events_it_wants_and_unsubscribed_hears_nothing(
        runtime: Runtime) -> None:
    """``wants`` is asked before anything is queued: the others never reach its thread."""
    heard = Heard()
    subscription = runtime.audit.subscribe(
        "audit-reads", heard, lambda committed: committed.event.action is Action.AUDIT_READ)
    start = _head(runtime)
    for i in range(10):
        _append(runtime) if i % 2 else _record(runtime)
    assert runtime.audit.subscribers.wait_idle()
    every = _committed_seqs(runtime, start)
    assert heard.seqs == every[0::2] and len(heard.seqs) == 5
    runtime.audit.subscribers.unsubscribe(subscription)
    _record(runtime)
    assert len(heard.seqs) == 5


def test_a_tick_runs_on_the_subscribers_thread_without_events_and_after_them_on_demand(
        runtime: Runtime) -> None:
    """The detectors' tick (the requests they tallied) runs every so often with no event to
    wake it, on the subscriber's own thread; ``wait_idle`` runs it after the events queued
    so far, and one that raises stops neither the ticks nor the events."""
    heard: list[str] = []
    threads: set[str] = set()

    def tick() -> None:
        threads.add(threading.current_thread().name)
        heard.append("tick")
        if len(heard) == 1:
            raise RuntimeError("a failing tick")

    subscription = runtime.audit.subscribe(
        "ticking", lambda committed: heard.append(committed.event.action.value),
        tick=(0.05, tick))
    try:
        deadline = time.monotonic() + 5
        while heard.count("tick") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert heard.count("tick") >= 3
        with runtime.store.transaction() as session:
            Auditor(runtime.audit, Actor(Channel.API)).record(session, Action.ORDERS_READ,
                                                              Outcome.SUCCESS)
        assert runtime.audit.subscribers.wait_idle(5)
        assert heard.index("orders:read") < len(heard) - 1  # a tick came after the event
        assert threads == {"subscriber-ticking"}
    finally:
        runtime.audit.subscribers.unsubscribe(subscription)
