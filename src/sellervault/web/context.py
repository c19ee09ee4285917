"""Per-request state and the permission dependency every route declares.

``require(action)`` is the only way a route gets a principal: it authenticates the bearer
token, asks the Cedar policy, and records on the request which action was attempted, so the
fallback security event of a refused or failed request names it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import Request

from sellervault.access.actions import PUBLIC_ACTIONS, Action
from sellervault.access.policy import is_authorized
from sellervault.access.roles import ALL_TENANTS, Principal
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import UnauthenticatedError
from sellervault.audit.events import Actor, Channel
from sellervault.audit.service import Auditor
from sellervault.runtime import Runtime

SCOPE_KEY = "sellervault"
ACTION_ATTRIBUTE = "sellervault_action"
CLIENT_HEADER = "x-sellervault-client"


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


@dataclass
class RequestState:
    runtime: Runtime
    auditor: Auditor
    action: Action = Action.HTTP_UNROUTED
    tenant_id: str | None = None
    principal: Principal | None = None
    extra: dict[str, Any] = field(default_factory=dict)

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


def new_state(runtime: Runtime, client_host: str | None, headers: dict[str, str]) -> RequestState:
    channel = Channel.CLI if headers.get(CLIENT_HEADER) == "cli" else Channel.API
    actor = Actor(channel=channel, source_ip=client_host, request_id=secrets.token_hex(8))
    return RequestState(runtime=runtime, auditor=Auditor(runtime.keyring, actor))


def request_state(request: Request) -> RequestState:
    state: RequestState = request.scope[SCOPE_KEY]
    return state


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require(action: Action, *, tenant_scoped: bool = False) -> Callable[[Request], RequestState]:
    """The dependency a route declares: authenticates and authorizes ``action``."""

    def dependency(request: Request) -> RequestState:
        state = request_state(request)
        state.action = action
        tenant_id = request.path_params.get("tenant") if tenant_scoped else None
        state.tenant_id = tenant_id
        if action in PUBLIC_ACTIONS:
            return state
        token = _bearer(request)
        if token is None:
            raise UnauthenticatedError()
        principal = accounts.authenticate(state.runtime, token)
        state.principal = principal
        state.auditor.actor = replace(state.auditor.actor, actor_id=principal.id)
        state.authorize(action, tenant_id)
        return state

    setattr(dependency, ACTION_ATTRIBUTE, action)
    dependency.__name__ = f"require_{action.value.replace(':', '_')}"
    return dependency
