"""The Cedar call: the policies in ``policies/`` evaluated for one request.

Only ``access.decisions`` asks it (and caches its answers): the decision around it adds the
purpose vocabulary and the tenant rule. Policies and schema are parsed once per process; each
evaluation builds a two-entity slice (the principal and the resource), so no answer depends
on state outside the request.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import cedarpy

from sellervault.access.actions import Action
from sellervault.access.roles import Principal

NAMESPACE = "SellerVault"
SYSTEM_ID = "sellervault"


def _read(name: str) -> str:
    return resources.files("sellervault.access").joinpath("policies", name).read_text()


@functools.cache
def policy_text() -> str:
    return _read("sellervault.cedar")


@functools.cache
def schema_text() -> str:
    return _read("sellervault.cedarschema")


@functools.cache
def _policy_set() -> cedarpy.PolicySet:
    return cedarpy.PolicySet.from_str(policy_text())


@functools.cache
def _schema() -> cedarpy.Schema:
    return cedarpy.Schema.from_str(schema_text())


def _principal_entity(principal: Principal) -> dict[str, Any]:
    return {
        "uid": {"type": f"{NAMESPACE}::Account", "id": principal.id},
        "attrs": {
            "kind": principal.kind,
            "grants": [{"role": g.role.value, "tenant": g.tenant} for g in principal.grants],
            "roles": sorted(role.value for role in principal.roles),
        },
        "parents": [],
    }


def is_authorized(
    principal: Principal,
    action: Action,
    tenant_id: str | None = None,
    context: dict[str, Any] | None = None,
) -> bool:
    """True only if a policy permits and none forbids; any evaluation error denies."""
    if tenant_id is None:
        resource: dict[str, Any] = {
            "uid": {"type": f"{NAMESPACE}::System", "id": SYSTEM_ID}, "attrs": {}, "parents": []
        }
    else:
        resource = {"uid": {"type": f"{NAMESPACE}::Tenant", "id": tenant_id},
                    "attrs": {"name": tenant_id}, "parents": []}
    request = {
        "principal": {"type": f"{NAMESPACE}::Account", "id": principal.id},
        "action": {"type": f"{NAMESPACE}::Action", "id": action.value},
        "resource": resource["uid"],
        "context": context or {},
    }
    try:
        result = cedarpy.is_authorized(
            request, _policy_set(), [_principal_entity(principal), resource], schema=_schema()
        )
    except Exception:  # a malformed request is a denial, never an error that leaks detail
        return False
    return bool(result.allowed)
