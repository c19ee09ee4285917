"""The outermost layer of the HTTPS service, in one visible order:

1. a request scope (request id, source address, channel, auditor);
2. security headers on every response (HSTS, no-store, no sniffing);
3. the fallback security event: a request whose service committed no event (a refusal, a
   validation error, an unknown route, a crash) gets one here, before its response starts.
   If even that cannot be written, the response is replaced by a 503: nothing is served
   that the log does not know about.

Authentication and authorization happen in the route's guard (``web.context``), before its
body is read.
"""

from __future__ import annotations

import logging

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sellervault.audit.events import Outcome, Reason
from sellervault.runtime import Runtime
from sellervault.web.context import (
    KEY_EXPIRES_HEADER,
    SCOPE_KEY,
    BodyTooLargeError,
    RequestState,
    new_state,
    sends_a_body,
)

log = logging.getLogger("sellervault.web")

DENIAL_REASONS = frozenset({Reason.NO_GRANT_ON_TENANT, Reason.PURPOSE_NOT_PERMITTED,
                            Reason.BUDGET_EXHAUSTED})
UNAVAILABLE_BODY = (b'{"error":{"code":"audit_unavailable",'
                    b'"message":"the security log cannot be written; request refused"}}')


def outcome_for(status: int, reason: Reason | None) -> Outcome:
    if status in (401, 403) or reason in DENIAL_REASONS:
        return Outcome.DENIED
    if status >= 500:
        return Outcome.ERROR
    if status >= 400:
        return Outcome.FAILED
    return Outcome.SUCCESS


def write_fallback_event(runtime: Runtime, state: RequestState, status: int) -> None:
    reason = state.extra.get("reason")
    with runtime.store.transaction() as session:
        state.auditor.record(session, state.action, outcome_for(status, reason),
                             tenant_id=state.tenant_id, status=status, reason=reason,
                             purpose=state.purpose,  # only one of the vocabulary
                             criteria=state.extra.get("criteria"))


def security_headers(hsts_max_age: int) -> list[tuple[bytes, bytes]]:
    """The headers every response carries (also the HTTP layer's own refusals: 400, 431,
    503, web.limits)."""
    return [
        (b"strict-transport-security", f"max-age={hsts_max_age}; includeSubDomains".encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"no-store"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
    ]


def _key_expiry(state: RequestState) -> list[tuple[bytes, bytes]]:
    """``X-SellerVault-Key-Expires`` on every response to an API key that ends within 30
    days: whoever runs the service that holds it sees the date in their own logs."""
    if state.key_expires_at is None:
        return []
    return [(KEY_EXPIRES_HEADER, state.key_expires_at.isoformat().encode())]


def _request_id(state: RequestState) -> tuple[bytes, bytes]:
    """Every response names its request (the id its security event carries, or would
    have: a 503 audit_unavailable has no event, and its id is what a support request quotes
    to find it in the server log)."""
    return b"x-request-id", (state.auditor.actor.request_id or "").encode()


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, runtime: Runtime, hsts_max_age: int) -> None:
        self.app = app
        self.runtime = runtime
        self.security_headers = security_headers(hsts_max_age)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        state = new_state(self.runtime, client[0] if client else None, scope["headers"])
        scope[SCOPE_KEY] = state
        started = False
        suppressed = False
        unread_body = sends_a_body(scope["headers"])
        if unread_body:
            received = 0

            async def receive_within_limit(receive: Receive = receive) -> Message:
                """The body as it arrives, refused (413) once it passes the route's limit;
                notes when all of it has been read."""
                nonlocal unread_body, received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > state.max_body:
                        raise BodyTooLargeError()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    unread_body = False
                return message

            receive = receive_within_limit

        async def guarded_send(message: Message) -> None:
            nonlocal started, suppressed
            if suppressed:
                return
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                if not state.auditor.committed:
                    try:
                        await anyio.to_thread.run_sync(write_fallback_event, self.runtime, state,
                                                    status)
                    except Exception as exc:
                        log.error("security event not written (request %s): %s",
                                  state.auditor.actor.request_id, type(exc).__name__)
                        suppressed = True
                        await self._unavailable(send, state)
                        return
                message["headers"] = [
                    *[(k, v) for k, v in message.get("headers", [])
                      if k.lower() != b"cache-control"],
                    *self.security_headers,
                    _request_id(state),
                    *_key_expiry(state),
                    # Refused before its body was read (401, 413): close rather than read
                    # and discard the rest of it to find the next request.
                    *([(b"connection", b"close")] if unread_body else []),
                ]
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except Exception as exc:
            # Starlette's error middleware has already answered 500 through guarded_send.
            log.error("request failed: %s", type(exc).__name__)
            if not started:
                await guarded_send({"type": "http.response.start", "status": 500,
                                    "headers": [(b"content-type", b"application/json")]})
                await guarded_send({"type": "http.response.body",
                                    "body": b'{"error":{"code":"internal_error",'
                                            b'"message":"internal error"}}'})

    async def _unavailable(self, send: Send, state: RequestState) -> None:
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(UNAVAILABLE_BODY)).encode()),
                                *self.security_headers, _request_id(state)]})
        await send({"type": "http.response.body", "body": UNAVAILABLE_BODY})
