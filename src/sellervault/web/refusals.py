"""The security events of requests the HTTP layer refuses before the application sees them.

``web.limits`` refuses a malformed request (400 ``malformed_request``), a head over 16 KiB
or chunk framing too far ahead of its body (431 ``headers_too_large``), a body arriving too
slowly (408 ``body_timeout``), a request past the server-wide cap (503 ``server_busy``), and
closes without an answer a connection whose head did not come in time (``head_timeout``) or
one over the per-address cap (``too_many_connections``). A refusal that would have been
answered in place of an earlier request's response is not answered at all: that response goes
out, and the connection closes after it. Each refusal is one ``http:refused`` event, channel
``api``, with the client address, the request id of its response, the status sent (none for
a close without an answer), the reason, and ``count``: the number of refusals it stands for,
1 unless the log fell behind (below). These events are the count of refusals per source
address that detectors read: the sum of ``count`` over a source address's ``http:refused``
events (``GET /api/v1/audit/events``, or the ``security_events`` table by
``source_ip`` and ``action``).

Outcomes: ``failed`` for what the client got wrong (a malformed request, a head too large or
too slow, a body too slow: 4xx, as ``web.middleware.outcome_for`` has it); ``denied`` for a
connection over the per-address cap, a limit on this client's own behaviour (like
``budget_exhausted``), which a detector of abusive addresses should count; ``error`` for the
server-wide cap, as every 5xx (``tenant_keys_busy`` included): the server had no room, the
client did nothing wrong, and a detector counting an address's denials must not count a
client that came while it was full.

One event per refusal cannot flood the log cheaply. Every refusal closes its connection, so
each event costs the client a new TCP connection and TLS handshake (a protocol hears of a
connection only once its handshake is done); a request the application refuses (a 401
without a token, on a connection kept alive) already writes one event for far less. One
address holds at most 32 connections at once, so head and body timeouts come at most 32 per
10 s per address. What that argument does not bound is this process's memory when the writer
falls behind (a slow or unreachable database): a request the application refuses waits for
its event and holds a place under the connection cap while it waits, a refusal does not (its
connection is closed without waiting for the event). So refusals that arrive while a write is
in flight are coalesced: those of the same address, reason and status become one event whose
``count`` says how many; past ``MAX_PENDING`` waiting events, a new address's refusals are
counted in one event per reason and status without an address. Nothing refused goes
uncounted, and what waits is bounded.

The events are written off the event loop, one batch at a time, on the loop's default
executor (not anyio's worker threads, which the application sizes to its database, one on
SQLite: refusals must not take a request's thread). A batch that cannot be written is logged
by its size and the exception's type name only; nothing ever reaches the protocol.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel, Outcome, Reason
from sellervault.runtime import Runtime
from sellervault.web.limits import Refusal

log = logging.getLogger("sellervault.web")

OUTCOMES: dict[Refusal, Outcome] = {
    Refusal.MALFORMED_REQUEST: Outcome.FAILED,
    Refusal.HEADERS_TOO_LARGE: Outcome.FAILED,
    Refusal.HEAD_TIMEOUT: Outcome.FAILED,
    Refusal.BODY_TIMEOUT: Outcome.FAILED,
    Refusal.TOO_MANY_CONNECTIONS: Outcome.DENIED,
    Refusal.NETWORK_NOT_ALLOWED: Outcome.DENIED,
    Refusal.SERVER_BUSY: Outcome.ERROR,
}
MAX_PENDING = 1024
"""Events waiting for a write, each of one address (beyond: one per reason and status, with
no address); a few hundred bytes each."""

_Key = tuple[str | None, Refusal, int | None]


@dataclass
class _Pending:
    request_id: str
    """The first refusal's (the id in its response)."""
    count: int = 1


class RefusalLog:
    """The ``on_refused`` of one server (``web.limits.bounded_protocol``).

    Called on the event loop; the waiting events belong to the loop's thread, and a write
    gets a batch that nothing else touches."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._pending: dict[_Key, _Pending] = {}
        self._writing = False

    def __call__(self, address: str | None, refusal: Refusal, status: int | None,
                 request_id: str) -> None:
        key: _Key = (address, refusal, status)
        if key not in self._pending and len(self._pending) >= MAX_PENDING:
            key = (None, refusal, status)
        waiting = self._pending.get(key)
        if waiting is None:
            self._pending[key] = _Pending(request_id)
        else:
            waiting.count += 1
        if not self._writing:
            self._write_pending(asyncio.get_running_loop())

    def _write_pending(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._pending = self._pending, {}
        try:
            written = loop.run_in_executor(None, self._write, batch)
        except Exception as exc:  # the loop is shutting down
            log.error("%d refused requests not logged: %s", _refusals(batch),
                      type(exc).__name__)
            return
        self._writing = True
        written.add_done_callback(lambda _: self._written(loop))

    def _written(self, loop: asyncio.AbstractEventLoop) -> None:
        self._writing = False
        if self._pending:
            self._write_pending(loop)

    def _write(self, batch: dict[_Key, _Pending]) -> None:
        """On a worker thread: the batch's events in one transaction."""
        try:
            with self.runtime.store.transaction() as session:
                for (address, refusal, status), waiting in batch.items():
                    actor = Actor(Channel.API, source_ip=address,
                                  request_id=waiting.request_id)
                    Auditor(self.runtime.audit, actor).record(
                        session, Action.HTTP_REFUSED, OUTCOMES[refusal], status=status,
                        reason=Reason(refusal.value), count=waiting.count)
        except Exception as exc:
            log.error("%d refused requests not logged: %s", _refusals(batch),
                      type(exc).__name__)


def _refusals(batch: dict[_Key, _Pending]) -> int:
    return sum(waiting.count for waiting in batch.values())
