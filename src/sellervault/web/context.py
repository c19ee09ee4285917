"""Per-request state and the permission dependency every route declares.

``require(action)`` declares a route's action. It runs on the event loop and does no I/O: it
records on the request which action is attempted (so the fallback security event of a
refused or failed request names it) and refuses a request without a bearer token at once.
The route's first step, in its worker thread, is ``state.authenticate()``: the token is
looked up and the Cedar policy asked, so a request costs one hop to a worker thread, not
two. (The order route on PostgreSQL awaits ``state.authenticate_async()`` in the event loop
instead, with no hop at all.) Until then the state gives out no runtime, so a route cannot
reach a service without authenticating first.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import Request

from sellervault.access.actions import PUBLIC_ACTIONS, Action
from sellervault.access.policy import is_authorized
from sellervault.access.roles import ALL_TENANTS, Principal, is_tenant_id
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import UnauthenticatedError
from sellervault.audit.events import Actor, Channel
from sellervault.audit.service import Auditor
from sellervault.runtime import Runtime

SCOPE_KEY = "sellervault"
ACTION_ATTRIBUTE = "sellervault_action"
CLIENT_HEADER = b"x-sellervault-client"  # (ASGI header names are lower case)


class ForbiddenError(Exception):
    code = "forbidden"
    status = 403

    def __init__(self) -> None:
        super().__init__("this account may not do that")


class TenantNotFoundError(Exception):
    """A tenant-scoped call by an account holding no grant on that tenant: its data is not
    acknowledged to exist (404), though the refusal is still a logged denial."""

    code = "not_found"
    status = 404

    def __init__(self) -> None:
        super().__init__("not found")


class NotAuthenticatedError(RuntimeError):
    """A route asked for the runtime before ``authenticate()``: a bug, answered with 500."""


@dataclass
class RequestState:
    _runtime: Runtime
    auditor: Auditor
    action: Action = Action.HTTP_UNROUTED
    tenant_id: str | None = None
    principal: Principal | None = None
    token: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _authorized: bool = False

    @property
    def runtime(self) -> Runtime:
        """The service runtime: only once ``authenticate()`` has passed, or for a public
        action."""
        if not self._authorized and self.action not in PUBLIC_ACTIONS:
            raise NotAuthenticatedError(f"{self.action.value}: authenticate() first")
        return self._runtime

    @property
    def in_event_loop(self) -> bool:
        """Whether this request's database work can be awaited in the event loop
        (PostgreSQL in a started server: ``Store.has_async``) instead of blocking a worker
        thread. Routes on the hot path then use the ``*_async`` services."""
        return self._runtime.store.has_async

    def authenticate(self) -> Principal:
        """The bearer token's principal, authorized for the route's declared action (401,
        403, or 404 for a tenant it holds no grant on)."""
        if self.token is None:
            raise UnauthenticatedError()
        return self._accept(accounts.authenticate(self._runtime, self.token))

    async def authenticate_async(self) -> Principal:
        """``authenticate`` in the event loop (see ``in_event_loop``)."""
        if self.token is None:
            raise UnauthenticatedError()
        return self._accept(await accounts.authenticate_async(self._runtime, self.token))

    def _accept(self, principal: Principal) -> Principal:
        self.principal = principal
        self.auditor.actor = replace(self.auditor.actor, actor_id=principal.id)
        self.authorize(self.action, self.tenant_id)
        self._authorized = True  # only now: a refusal caught by a route still gives nothing
        return principal

    def authorize(self, action: Action, tenant_id: str | None = None,
                  context: dict[str, Any] | None = None) -> Principal:
        """Ask the policy; raise 403, or 404 for a tenant the principal holds no grant on."""
        principal = self.principal
        if principal is None:
            raise UnauthenticatedError()
        self.action = action
        self.tenant_id = tenant_id
        if is_authorized(principal, action, tenant_id, context):
            return principal
        if tenant_id is not None and not any(
            grant.tenant in (tenant_id, ALL_TENANTS) for grant in principal.grants
        ):
            raise TenantNotFoundError()
        raise ForbiddenError()


def new_state(runtime: Runtime, client_host: str | None,
              headers: list[tuple[bytes, bytes]]) -> RequestState:
    """The state of a request with these ASGI ``headers``: the channel is the CLI's when its
    client says so (a label for the log, not a credential)."""
    channel = Channel.CLI if (CLIENT_HEADER, b"cli") in headers else Channel.API
    actor = Actor(channel=channel, source_ip=client_host, request_id=secrets.token_hex(8))
    return RequestState(_runtime=runtime, auditor=Auditor(runtime.keyring, actor))


def request_state(request: Request) -> RequestState:
    state: RequestState = request.scope[SCOPE_KEY]
    return state


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _path_tenant(request: Request) -> str | None:
    """The tenant named in the path, if it is a well-formed tenant id. The dependency runs
    before the route's own input checks, and the tenant it notes goes into the request's
    security event: a malformed one (free text from the request, an email address, a value
    too long for the column) is noted as none, and the route's check then refuses it (422)."""
    tenant = request.path_params.get("tenant")
    return tenant if tenant is not None and is_tenant_id(tenant) else None


def require(action: Action, *,
            tenant_scoped: bool = False) -> Callable[[Request], Awaitable[RequestState]]:
    """The dependency a route declares: names its action; a non-public route must then call
    ``state.authenticate()`` before anything else."""

    async def dependency(request: Request) -> RequestState:
        state = request_state(request)
        state.action = action
        state.tenant_id = _path_tenant(request) if tenant_scoped else None
        if action not in PUBLIC_ACTIONS:
            state.token = _bearer(request)
            if state.token is None:  # refused before any input is even validated
                raise UnauthenticatedError()
        return state

    setattr(dependency, ACTION_ATTRIBUTE, action)
    dependency.__name__ = f"require_{action.value.replace(':', '_')}"
    return dependency
