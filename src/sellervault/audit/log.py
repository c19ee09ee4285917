"""The security log of one runtime: what its writers need, and who hears of its events.

One ``AuditLog`` per process (``Runtime.audit``): the keyring that holds the log key, the
clock that times every event, and the subscribers told of each event once it commits
(``audit.subscribers``). Writers (``writing``, ``batching``) take all three from here, so
an event's time is the runtime's clock's, and no event is written that its subscribers do
not hear of.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sellervault.audit.events import SecurityEvent
from sellervault.audit.subscribers import (
    CommittedEvent,
    Interest,
    Subscriber,
    Subscribers,
    Subscription,
    Tick,
)
from sellervault.clock import Clock
from sellervault.crypto.keyring import Keyring


def event_time(moment: datetime) -> str:
    """A time as events record it: UTC, microseconds, "Z" (2026-11-29T04:12:13.123456Z),
    which sorts as it reads."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


class AuditLog:
    def __init__(self, keyring: Keyring, clock: Clock) -> None:
        self.keyring = keyring
        self.clock = clock
        self.subscribers = Subscribers()

    def occurred_at(self) -> str:
        """Now, as events record it: UTC, microseconds, "Z" (2026-11-29T04:12:13.123456Z)."""
        return event_time(self.clock.now())

    def subscribe(self, name: str, subscriber: Subscriber, wants: Interest | None = None,
                  tick: tuple[float, Tick] | None = None) -> Subscription:
        """Hand every event this process commits from now on (that it ``wants``) to
        ``subscriber``, in chain order, once, on a thread of its own, and run its ``tick``
        there every so often (``audit.subscribers``)."""
        return self.subscribers.subscribe(name, subscriber, wants, tick)

    @staticmethod
    def committed(row: dict[str, Any], event: SecurityEvent) -> CommittedEvent:
        return CommittedEvent(row["seq"], row["occurred_at"], event)

    def close(self) -> None:
        self.subscribers.close()
