"""Per-request state and the permission dependency every route declares.

``require(action)`` declares a route's action (and its body limit). Every route is a
``GuardedRoute``, which applies the declaration before FastAPI reads the body, on the event
loop and with no I/O: it records on the request which action is attempted (so the fallback
security event of a refused or failed request names it), refuses a request without a bearer
token at once (401) and a body announced over the limit (413). The route's first step, in
its worker thread, is ``state.authenticate()``: the token is looked up and the Cedar policy
asked, so a request costs one hop to a worker thread, not two. (The order route on
PostgreSQL awaits ``state.authenticate_async()`` in the event loop instead, with no hop at
all.) Until then the state gives out no runtime, so a route cannot reach a service without
authenticating first.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from sellervault.access.actions import PUBLIC_ACTIONS, Action
from sellervault.access.policy import is_authorized
from sellervault.access.roles import ALL_TENANTS, Principal, is_tenant_id
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import UnauthenticatedError
from sellervault.audit.events import Actor, Channel
from sellervault.audit.service import Auditor
from sellervault.runtime import Runtime
from sellervault.web.limits import MAX_BODY_BYTES, MAX_INGEST_BODY_BYTES

SCOPE_KEY = "sellervault"
DECLARATION_ATTRIBUTE = "sellervault_declaration"
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


class BodyTooLargeError(StarletteHTTPException):
    """A body larger than the route takes (413), refused before or while it is read. An HTTP
    exception, because it is raised from inside FastAPI's reading of the body, which turns
    anything else into a 400."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


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
    declared: Declaration | None = None
    """The declaration applied to this request, once it passed (``_declare``)."""
    _authorized: bool = False

    @property
    def max_body(self) -> int:
        """The largest body the route takes (its declaration; the default until it has
        passed): the middleware counts the body against it."""
        return self.declared.max_body if self.declared is not None else MAX_BODY_BYTES

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

    def authenticate(self, context: dict[str, Any] | None = None) -> Principal:
        """The bearer token's principal, authorized for the route's declared action (401,
        403, or 404 for a tenant it holds no grant on); ``context`` is the policy's request
        context (a stated purpose)."""
        if self.token is None:
            raise UnauthenticatedError()
        return self._accept(accounts.authenticate(self._runtime, self.token), context)

    async def authenticate_async(self) -> Principal:
        """``authenticate`` in the event loop (see ``in_event_loop``)."""
        if self.token is None:
            raise UnauthenticatedError()
        return self._accept(await accounts.authenticate_async(self._runtime, self.token))

    def _accept(self, principal: Principal,
                context: dict[str, Any] | None = None) -> Principal:
        self.principal = principal
        self.auditor.actor = replace(self.auditor.actor, actor_id=principal.id)
        self.authorize(self.action, self.tenant_id, context)
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
    """The tenant named in the path, if it is a well-formed tenant id. The declaration is
    applied before the route's own input checks, and the tenant it notes goes into the
    request's security event: a malformed one (free text from the request, an email address,
    a value too long for the column) is noted as none, and the route's check then refuses it
    (422)."""
    tenant = request.path_params.get("tenant")
    return tenant if tenant is not None and is_tenant_id(tenant) else None


@dataclass(frozen=True, slots=True)
class Declaration:
    """What a route declares with ``require``: its action, whether the path names a tenant,
    and the largest body it takes."""

    action: Action
    tenant_scoped: bool = False
    max_body: int = MAX_BODY_BYTES


def _declare(request: Request, declared: Declaration) -> RequestState:
    """Note the route's action (and tenant) on the request, for its security event; refuse a
    non-public action without a bearer token (401), then a body announced larger than the
    route takes (413). Nothing of the body has been read."""
    state = request_state(request)
    state.action = declared.action
    state.tenant_id = _path_tenant(request) if declared.tenant_scoped else None
    if declared.action not in PUBLIC_ACTIONS:
        state.token = _bearer(request)
        if state.token is None:
            raise UnauthenticatedError()
    if _content_length(request) > declared.max_body:
        raise BodyTooLargeError()
    state.declared = declared
    return state


def _content_length(request: Request) -> int:
    """The announced body size; one too long to be real (llhttp accepts any number of
    leading zeros, Python's int() refuses over 4,300 digits) counts as over every limit.
    A malformed value never gets here: the HTTP parser refuses it."""
    value = request.headers.get("content-length", "")
    if not (value.isascii() and value.isdigit()):
        return 0
    digits = value.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else MAX_INGEST_BODY_BYTES + 1


def require(action: Action, *, tenant_scoped: bool = False,
            max_body: int = MAX_BODY_BYTES) -> Callable[[Request], Awaitable[RequestState]]:
    """The dependency a route declares: names its action (and its body limit); a non-public
    route must then call ``state.authenticate()`` before anything else. ``GuardedRoute``
    applies the declaration before the body is read; the dependency applies it again (a
    no-op then), so a route built without ``GuardedRoute`` still refuses, only later."""
    declared = Declaration(action, tenant_scoped, max_body)

    async def dependency(request: Request) -> RequestState:
        state = request_state(request)
        if state.declared is declared:  # GuardedRoute applied it already
            return state
        return _declare(request, declared)

    setattr(dependency, DECLARATION_ATTRIBUTE, declared)
    dependency.__name__ = f"require_{action.value.replace(':', '_')}"
    return dependency


def declaration_of(route: APIRoute) -> Declaration | None:
    """What ``route`` declares with ``require``, or None for a route that declares nothing
    (tests/web/test_routes.py fails on such a route)."""
    for dependency in route.dependant.dependencies:
        declared = getattr(dependency.call, DECLARATION_ATTRIBUTE, None)
        if isinstance(declared, Declaration):
            return declared
    return None


class GuardedRoute(APIRoute):
    """An API route that applies its declaration before FastAPI reads the request body.

    FastAPI reads and parses a body before it runs any dependency, so ``require`` alone let
    an anonymous caller make the server receive, hold and parse a body (up to the route's
    limit) before its 401. Here a non-public route refuses a request without a bearer token
    first, and any route a body announced over its limit (413), having read nothing but the
    headers; the limit holds while the body is read too (``web.middleware``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        declared = declaration_of(self)
        if declared is None:
            return handler

        async def guarded(request: Request) -> Response:
            _declare(request, declared)
            return await handler(request)

        return guarded


def api_router(tag: str) -> APIRouter:
    """A router whose routes are ``GuardedRoute``s (every SellerVault router is one)."""
    return APIRouter(tags=[tag], route_class=GuardedRoute)
