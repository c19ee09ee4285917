"""Subscribers: who hears of each security event once it has committed.

Detectors, checkpoint writers and notifications attach here. A subscriber receives every
event this process commits, once, in the order of the chain, after the commit; never an event
whose transaction rolled back. It receives the event's typed fields (ids, enums, counts), so
there is no PII to receive.

Order without waiting for the database: the writer that fixes an event's place in the chain
(holding the head, or having guessed it from its own last write) takes the next *place* in
this process's queue at that moment (``take_place``), and settles it when its transaction
ends (``settle``: the event, or nothing if it rolled back). Places are taken in chain order
(an event's successor can only be placed once the event's own place is taken), so delivering
settled places in place order is delivering in chain order; events of other processes have
no place here and leave no gaps to wait for.

Nothing a subscriber does reaches the writer: each subscriber has its own thread and queue,
so one that raises is logged and goes on with the next event, and one that is slow delays only
itself. The event is in the log either way.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sellervault.audit.events import SecurityEvent

log = logging.getLogger("sellervault.audit")


@dataclass(frozen=True, slots=True)
class CommittedEvent:
    """An event as committed: its place in the chain, its time, its typed fields."""

    seq: int
    occurred_at: str
    event: SecurityEvent


Subscriber = Callable[[CommittedEvent], None]
Interest = Callable[[CommittedEvent], bool]
"""Which events a subscriber wants, asked in the writer's thread before anything is queued:
an event nobody wants wakes no thread (a request's own events are mostly of no interest to
the detectors, and a wake-up costs the request the interpreter for a moment)."""
Tick = Callable[[], None]
"""Work a subscriber does on its own thread every so often, events or not (the detectors
hand the requests they tallied to the shared counters once a second)."""
_STOP = object()
_TICK = object()


class Subscription:
    """One subscriber's queue and the thread that feeds it, in order, one event at a time."""

    def __init__(self, name: str, subscriber: Subscriber, wants: Interest | None = None,
                 tick: tuple[float, Tick] | None = None) -> None:
        self.name = name
        self._subscriber = subscriber
        self._wants = wants
        self._tick = tick
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name=f"subscriber-{name}",
                                        daemon=True)
        self._thread.start()

    def offer(self, committed: CommittedEvent) -> None:
        if self._wants is not None and not self._wants(committed):
            return
        with self._idle:
            self._pending += 1
        self._queue.put(committed)

    def tick_now(self) -> None:
        """Run the tick on the subscriber's thread after the events offered so far
        (``wait_idle`` waits for it too): tests, and a shut-down that loses nothing."""
        if self._tick is not None:
            with self._idle:
                self._pending += 1
            self._queue.put(_TICK)

    def _run(self) -> None:
        every = None if self._tick is None else self._tick[0]
        due = time.monotonic() + (every or 0)
        while True:
            try:
                item = self._queue.get(timeout=every)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if isinstance(item, CommittedEvent):
                self._handle(item)
            if self._tick is not None and (item is _TICK or time.monotonic() >= due):
                self._run_tick(self._tick[1])
                due = time.monotonic() + self._tick[0]
            if item is not None:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _handle(self, item: CommittedEvent) -> None:
        try:
            self._subscriber(item)
        except BaseException as exc:  # its failure is its own: the next event still comes
            log.error("security-event subscriber %s failed on event %d: %s", self.name,
                      item.seq, type(exc).__name__)

    def _run_tick(self, tick: Tick) -> None:
        try:
            tick()
        except BaseException as exc:
            log.error("security-event subscriber %s failed on its tick: %s", self.name,
                      type(exc).__name__)

    def wait_idle(self, timeout: float) -> bool:
        """Whether every event offered so far was handed over within ``timeout`` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stop(self, timeout: float) -> None:
        self.tick_now()  # what was tallied since the last tick is not lost
        self._queue.put(_STOP)
        self._thread.join(timeout)


class Subscribers:
    """The subscribers of one security log, and the places of its events in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: tuple[Subscription, ...] = ()
        self._next_place = 0  # the place the next writer takes
        self._next_delivery = 0  # the first place not delivered yet
        self._settled: dict[int, CommittedEvent | None] = {}

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return self._subscriptions

    def subscribe(self, name: str, subscriber: Subscriber, wants: Interest | None = None,
                  tick: tuple[float, Tick] | None = None) -> Subscription:
        """Deliver every event committed from now on (that it ``wants``) to ``subscriber``,
        on its own thread; run ``tick`` = (seconds, work) there that often."""
        subscription = Subscription(name, subscriber, wants, tick)
        with self._lock:
            self._subscriptions = (*self._subscriptions, subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription, timeout: float = 5.0) -> None:
        """Deliver nothing more to ``subscription``; its thread ends once it has handled
        what it was given."""
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)
        subscription.stop(timeout)

    def take_place(self) -> int | None:
        """The next place in delivery order, for a writer that has just fixed its event's
        place in the chain; None when nobody listens (nothing to order)."""
        if not self._subscriptions:
            return None
        with self._lock:
            place = self._next_place
            self._next_place += 1
            return place

    def settle(self, place: int | None, committed: CommittedEvent | None) -> None:
        """The transaction of ``place`` ended: committed (``committed``) or not (None).
        Delivers it, and every later place already settled, if all before it are."""
        if place is None:
            return
        with self._lock:
            self._settled[place] = committed
            while self._next_delivery in self._settled:
                ready = self._settled.pop(self._next_delivery)
                self._next_delivery += 1
                if ready is not None:
                    for subscription in self._subscriptions:
                        subscription.offer(ready)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Whether every subscriber has been handed every event settled so far, and has run
        its tick after them (tests, and a clean shut-down)."""
        for subscription in self._subscriptions:
            subscription.tick_now()
        return all(subscription.wait_idle(timeout) for subscription in self._subscriptions)

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            subscriptions, self._subscriptions = self._subscriptions, ()
        for subscription in subscriptions:
            subscription.stop(timeout)
