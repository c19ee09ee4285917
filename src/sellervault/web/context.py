"""Per-request state and the declaration every route makes.

``require(action)`` declares a route's action, its body limit, and whether it reads a stated
purpose. Every route is a ``GuardedRoute``, which applies the declaration before FastAPI
reads the body or validates a single parameter: it notes on the request which action is
attempted (so the security event of a refused or failed request names it, with the stated
purpose when it is one of the vocabulary's), refuses a request without one bearer token
(401), looks the token up (401), refuses a body announced over the limit (413) and answers
``access.decisions.decide``'s decision (403, or 404 for a tenant the caller holds no grant
on; deciding is not this module's: it only maps the decision), then the operators' kill
switches (403 ``kill_switch``, ``access.killswitches``). Only then is the body
read, parsed (``web.body``) and validated: an anonymous or unauthorized caller cannot make
the server read, hold or parse anything, and a request that fails validation is logged with
its actor. Once a body is in, the credential and the decision are confirmed again
(``confirm_after_body``): a body may take minutes to arrive. Until the guard has passed, the
state gives out no runtime, so a route cannot reach a service unauthenticated.

The token is looked up by ``Store.run``: awaited in the event loop (psycopg's asynchronous
connections on PostgreSQL, the loop's own connection on SQLite).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from sellervault.access.actions import PUBLIC_ACTIONS, Action
from sellervault.access.decisions import Decision, decide, is_permitted_purpose
from sellervault.access.errors import PurposeNotPermittedError
from sellervault.access.roles import Principal, is_tenant_id
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import UnauthenticatedError
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel, Reason
from sellervault.runtime import Runtime
from sellervault.web.body import JSONBodyRequest
from sellervault.web.limits import MAX_BODY_BYTES, MAX_INGEST_BODY_BYTES

SCOPE_KEY = "sellervault"
DECLARATION_ATTRIBUTE = "sellervault_declaration"
CLIENT_HEADER = b"x-sellervault-client"  # (ASGI header names are lower case)
PURPOSE_HEADER = "X-Access-Purpose"
KEY_EXPIRES_HEADER = b"x-sellervault-key-expires"
PURPOSE_MAX_LENGTH = 64
_PURPOSE_KEY = PURPOSE_HEADER.lower().encode()


class ForbiddenError(Exception):
    code = Reason.FORBIDDEN
    status = 403

    def __init__(self) -> None:
        super().__init__("this account may not do that")


class TenantNotFoundError(Exception):
    """A tenant-scoped call by an account holding no grant on that tenant: its data is not
    acknowledged to exist (404), though the refusal is still a logged denial."""

    code = Reason.NOT_FOUND
    status = 404

    def __init__(self) -> None:
        super().__init__("not found")


REFUSALS: dict[Decision, type[Exception]] = {
    Decision.NOT_FOUND: TenantNotFoundError,
    Decision.FORBIDDEN: ForbiddenError,
    # A PII operation without a purpose is answered as one for a purpose not permitted.
    Decision.PURPOSE_REQUIRED: PurposeNotPermittedError,
    Decision.PURPOSE_NOT_PERMITTED: PurposeNotPermittedError,
}
"""The response each refusal ``decide`` gives is answered with (any other: 403)."""


class BodyTooLargeError(StarletteHTTPException):
    """A body larger than the route takes (413), refused before or while it is read. An HTTP
    exception, because it is raised from inside FastAPI's reading of the body, which turns
    anything else into a 400."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


class NotAuthenticatedError(RuntimeError):
    """A route reached the runtime or the principal before the guard passed: a bug,
    answered with 500."""


@dataclass
class RequestState:
    _runtime: Runtime
    auditor: Auditor
    action: Action = Action.HTTP_UNROUTED
    tenant_id: str | None = None
    purpose: str | None = None
    """The purpose the request states, when it is one of the vocabulary's (free text never
    reaches the log). Once the guard has passed, a route that reads purposes reveals only
    when this is set: a stated purpose that the policy refuses never gets that far."""
    token: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    declared: Declaration | None = None
    """The declaration applied to this request, once its guard has passed."""
    key_expires_at: datetime | None = None
    """When the API key that authenticated the request ends, if within 30 days: the
    response carries it (``KEY_EXPIRES_HEADER``) so that its service's operator hears."""
    _principal: Principal | None = None

    @property
    def max_body(self) -> int:
        """The largest body the route takes (its declaration; the default until it has
        passed): the middleware counts the body against it."""
        return self.declared.max_body if self.declared is not None else MAX_BODY_BYTES

    @property
    def runtime(self) -> Runtime:
        """The service runtime: only once the guard has authorized the caller, or for a
        public action."""
        if self.declared is None or (self._principal is None
                                     and self.action not in PUBLIC_ACTIONS):
            raise NotAuthenticatedError(f"{self.action.value}: the guard has not passed")
        return self._runtime

    def on_tenant(self, tenant_id: str) -> Runtime:
        """The service runtime, for a request whose tenant is not in its path: named in its
        body (a correction, a restriction, a deletion request, a legal hold) or the tenant
        of the row it acts on by id. The tenant's kill switch stops it as it stops one whose
        path names the tenant, and its event (a refusal's too) names the tenant. From a
        route's worker thread, once the guard has passed."""
        runtime, principal = self.runtime, self.principal
        self.tenant_id = tenant_id
        runtime.store.call(runtime.switches.check, runtime, principal, self.action, tenant_id)
        return runtime

    @property
    def principal(self) -> Principal:
        """The authenticated and authorized caller."""
        if self.declared is None or self._principal is None:
            raise NotAuthenticatedError(f"{self.action.value}: the guard has not passed")
        return self._principal

    async def identify(self) -> Principal:
        """The bearer token's account (401 without one, or for one that is not live); the
        event of whatever follows names it."""
        if self.token is None:
            raise UnauthenticatedError()
        credential = await self._runtime.store.run(accounts.authenticate, self._runtime,
                                                   self.token, self.auditor.actor.source_ip)
        principal = credential.principal
        self.auditor.actor = replace(self.auditor.actor, actor_id=principal.id)
        if credential.expires_soon(self._runtime.clock.now()):
            self.key_expires_at = credential.expires_at
        return principal

    def authorize(self, principal: Principal, action: Action, tenant_id: str | None = None,
                  purpose: str | None = None) -> Principal:
        """The decision (``access.decisions.decide``) as a response: the principal, or the
        refusal its reason maps to (``REFUSALS``)."""
        self.action = action
        self.tenant_id = tenant_id
        decision = decide(principal, action, tenant_id, purpose)
        if decision is Decision.ALLOWED:
            return principal
        raise REFUSALS.get(decision, ForbiddenError)()


def new_state(runtime: Runtime, client_host: str | None,
              headers: list[tuple[bytes, bytes]]) -> RequestState:
    """The state of a request with these ASGI ``headers``: the channel is the CLI's when its
    client says so (a label for the log, not a credential)."""
    channel = Channel.CLI if (CLIENT_HEADER, b"cli") in headers else Channel.API
    actor = Actor(channel=channel, source_ip=client_host, request_id=secrets.token_hex(8))
    return RequestState(_runtime=runtime, auditor=Auditor(runtime.audit, actor))


def request_state(request: Request) -> RequestState:
    state: RequestState = request.scope[SCOPE_KEY]
    return state


def _bearer(request: Request) -> str | None:
    """The bearer token of the request's one ``Authorization`` header. Two such headers are
    refused (no token): a proxy that takes the last one would disagree with this service
    about who is calling."""
    headers: list[bytes] = [value for name, value in request.scope["headers"]
                            if name == b"authorization"]
    if len(headers) != 1:
        return None
    scheme, _, token = headers[0].decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@dataclass(frozen=True, slots=True)
class Declaration:
    """What a route declares with ``require``: its action, whether the path names a tenant,
    the largest body it takes, and ``with_purpose``: the action a request asks for when it
    states a purpose (``X-Access-Purpose``), decided for that purpose. A route whose own
    action is its ``with_purpose`` always needs a purpose."""

    action: Action
    tenant_scoped: bool = False
    max_body: int = MAX_BODY_BYTES
    with_purpose: Action | None = None
    notes: Callable[[Request], dict[str, Any]] | None = None
    """What the request's event notes from its head before it is authorized (a search's
    kinds of criteria: so that a refused search is logged with what it asked for)."""


def stated_purpose(request: Request, errors: list[dict[str, Any]]) -> str | None:
    """The one purpose the request states (``X-Access-Purpose``), or None; two, or one over
    64 characters, add a validation error."""
    purposes = [value for name, value in request.scope["headers"] if name == _PURPOSE_KEY]
    if len(purposes) > 1:
        errors.append({"type": "too_many_values", "loc": ("header", PURPOSE_HEADER)})
        return None
    if purposes and len(purposes[0]) > PURPOSE_MAX_LENGTH:
        errors.append({"type": "string_too_long", "loc": ("header", PURPOSE_HEADER)})
        return None
    return purposes[0].decode("latin-1") if purposes else None  # (as Starlette decodes)


async def guard(request: Request, declared: Declaration) -> RequestState:
    """Apply ``declared`` to the request, reading nothing of its body: note the action (and
    purpose) for the request's security event; then 401 without a token, or for one that is
    not live; 413 for a body announced over the limit; 422 for a malformed tenant or purpose
    (only now: validation comes after authentication); and the decision (403/404; 403
    ``purpose_not_permitted`` for a purpose outside the vocabulary, or none). A public route
    skips the token."""
    state = request_state(request)
    errors: list[dict[str, Any]] = []
    tenant = _path_tenant(request, declared, errors)
    purpose = (stated_purpose(request, errors) if declared.with_purpose is not None
               else None)
    action = declared.action if purpose is None else declared.with_purpose
    assert action is not None
    state.action = action
    state.purpose = purpose if is_permitted_purpose(purpose) else None
    if declared.notes is not None:
        state.extra.update(declared.notes(request))
    if declared.action not in PUBLIC_ACTIONS:
        state.token = _bearer(request)
        principal = await state.identify()
    state.tenant_id = tenant  # (for a caller who is known, or a public route: see _path_tenant)
    _refuse_announced_excess(request, declared)
    if errors:
        raise RequestValidationError(errors)
    if declared.action not in PUBLIC_ACTIONS:
        state.authorize(principal, action, tenant, purpose)
        await state._runtime.switches.check(state._runtime, principal, action, tenant)
        state._principal = principal
    state.declared = declared
    return state


async def confirm_after_body(request: Request, state: RequestState) -> None:
    """Look the credential up again, and ask the policy again, once a request's body is in.

    The guard decided before the body was read, and a body can take minutes to arrive (16 MiB
    at the slowest rate ``web.limits`` allows); a credential revoked or expired meanwhile, or
    a grant withdrawn, must not act on it. Only requests that carried a body pay for it."""
    declared, principal = state.declared, state._principal
    if declared is None or principal is None or not sends_a_body(request.scope["headers"]):
        return
    principal = await state.identify()
    # (the purpose as stated: once the guard has passed, a stated one is of the vocabulary)
    state.authorize(principal, state.action, state.tenant_id, state.purpose)
    state._principal = principal


def _path_tenant(request: Request, declared: Declaration,
                 errors: list[dict[str, Any]]) -> str | None:
    """The tenant the path names, for a tenant-scoped route. A malformed one (free text from
    the path: an email address, a value too long for the column) adds a validation error and
    is noted as none, so it never reaches the log; a well-formed one is noted only once the
    caller is known (``guard``), so that an anonymous caller cannot write tenant-shaped text
    (a phone number) into the log."""
    tenant: str | None = request.path_params.get("tenant") if declared.tenant_scoped else None
    if tenant is not None and not is_tenant_id(tenant):
        errors.append({"type": "string_pattern_mismatch", "loc": ("path", "tenant")})
        return None
    return tenant


def _refuse_announced_excess(request: Request, declared: Declaration) -> None:
    if _content_length(request) > declared.max_body:
        raise BodyTooLargeError()


def sends_a_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request with these ASGI headers announces a body (a length, or chunks)."""
    for name, value in headers:
        if (name == b"content-length" and value.strip() not in (b"", b"0")) or (
                name == b"transfer-encoding"):
            return True
    return False


def _content_length(request: Request) -> int:
    """The announced body size; one too long to be real (llhttp accepts any number of
    leading zeros, Python's int() refuses over 4,300 digits) counts as over every limit.
    A malformed value never gets here: the HTTP parser refuses it."""
    value = request.headers.get("content-length", "")
    if not (value.isascii() and value.isdigit()):
        return 0
    digits = value.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else MAX_INGEST_BODY_BYTES + 1


def require(action: Action, *, tenant_scoped: bool = False, max_body: int = MAX_BODY_BYTES,
            with_purpose: Action | None = None,
            notes: Callable[[Request], dict[str, Any]] | None = None,
            ) -> Callable[[Request], Awaitable[RequestState]]:
    """The dependency a route declares (see ``Declaration``); it gives the route its
    request state once the guard has passed. ``GuardedRoute`` applies the guard before the
    body is read; the dependency applies it itself for a route built without one (only
    later: tests/web/test_routes.py fails on such a route)."""
    declared = Declaration(action, tenant_scoped, max_body, with_purpose, notes)

    async def dependency(request: Request) -> RequestState:
        state = request_state(request)
        # GuardedRoute applied it already. (Compared by value: FastAPI evaluates a route's
        # annotations, and so calls ``require``, again for each copy of the route it makes,
        # so the declaration the route holds is an equal object, not the same one.) FastAPI
        # runs this once the body is read: the credential is confirmed again if there was one.
        if state.declared == declared:
            await confirm_after_body(request, state)
            return state
        return await guard(request, declared)

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
    """An API route that applies its declaration's guard before FastAPI reads the request
    body or validates any parameter, and parses a JSON body with ``web.body``'s rules.

    FastAPI reads, parses and validates the body and parameters before it runs any
    dependency, so ``require`` alone let any caller (with no token, or any string as one)
    make the server receive, hold and parse a body before its 401, and a request failing
    validation was answered (and logged) as if nobody had made it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        declared = declaration_of(self)
        if declared is None:
            return handler

        async def guarded(request: Request) -> Response:
            await guard(request, declared)
            return await handler(JSONBodyRequest(request.scope, request.receive))

        return guarded


def api_router(tag: str) -> APIRouter:
    """A router whose routes are ``GuardedRoute``s (every SellerVault router is one)."""
    return APIRouter(tags=[tag], route_class=GuardedRoute)
