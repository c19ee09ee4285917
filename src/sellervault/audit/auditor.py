"""The auditor of one request or command: every event it writes names the same actor."""

from __future__ import annotations

from sqlalchemy.orm import Session
from typing_extensions import Unpack

from sellervault.access.actions import Action
from sellervault.audit import batching, writing
from sellervault.audit.events import Actor, EventFields, Outcome, SecurityEvent
from sellervault.audit.log import AuditLog
from sellervault.store.driver import DriverConnection
from sellervault.store.engine import Store, after_commit


class Auditor:
    """Records the events of one request or command, and knows whether one was committed.

    The web layer writes a fallback event for a request only when no service committed one,
    so every request ends with exactly one event, success or failure. ``init``'s auditor
    ``starts_chain``: its first event creates the chain's head (see ``writing.record``).
    """

    def __init__(self, log: AuditLog, actor: Actor, *, starts_chain: bool = False) -> None:
        self.log = log
        self.actor = actor
        self.committed = False
        self._starts_chain = starts_chain

    def _mark_committed(self) -> None:
        self.committed = True

    def record(self, db: Session | DriverConnection, action: Action, outcome: Outcome,
               **fields: Unpack[EventFields]) -> int:
        """An event in the transaction of ``db`` (see ``writing.record``)."""
        seq = writing.record(db, self.log, SecurityEvent(action, outcome, self.actor, **fields),
                             starts_chain=self._starts_chain)
        self._starts_chain = False
        after_commit(db, self._mark_committed)
        return seq

    async def append(self, store: Store, action: Action, outcome: Outcome,
                     **fields: Unpack[EventFields]) -> int:
        """An event committed on its own (see ``batching.append``)."""
        seq = await batching.append(store, self.log,
                                    SecurityEvent(action, outcome, self.actor, **fields))
        self.committed = True
        return seq
