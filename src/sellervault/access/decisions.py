"""The authorization decision, made in one place, and typed: what the web layer answers, and
what account changes are refused for, is decided here and only mapped elsewhere.

``decide`` answers "may this principal take this action on this tenant, for this purpose?"
with a ``Decision``: allowed, or the reason it is refused. Its rules, in the order they apply:

1. A PII operation (``actions.PURPOSE_ACTIONS``) needs a purpose of the vocabulary
   (``records.registry.Purpose``: the classification's list, which the Cedar policy repeats
   and tests/access holds equal). Without one the request is refused before the policy is
   asked, so free text never reaches Cedar or the cache.
2. The Cedar policy (``access.policy``): deny by default; its guardrails forbid PII without a
   permitted purpose, to an account holding a service-wide role (``NEVER_WITH_PII``), and
   on a tenant the account holds no ``pii-reader`` grant on by name.
3. A refusal on a tenant the principal holds no grant on at all (neither that tenant nor
   ``*``) is ``NOT_FOUND``, whatever the other reason: the tenant's data is not acknowledged
   to exist, so the 404 must not depend on the action or the purpose asked for.

Separation of duties is decided here too: which roles one account may not hold together,
and that PII is granted tenant by tenant (``decide_grants``), and that an account's creator
is never the second person who approves it (``decide_approval``).

A request decision is a pure function of its inputs (the policies are fixed per process, and
a principal carries all its grants), and it runs on every request, so each distinct question
is evaluated once and then answered from a cache.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from enum import StrEnum

from sellervault.access.actions import PURPOSE_ACTIONS, Action
from sellervault.access.errors import PurposeNotPermittedError
from sellervault.access.policy import is_authorized
from sellervault.access.roles import ALL_TENANTS, Grant, Principal, Role
from sellervault.records.registry import PURPOSES

# Separation of duties: who administers, runs, polices or audits the service never reads PII.
# The Cedar guardrail forbids these roles every PII operation whatever else they hold, so
# pii-reader beside one of them would be a grant that does nothing: it is refused instead.
NEVER_WITH_PII = frozenset({Role.ADMIN, Role.OPERATOR, Role.SECURITY_OFFICER, Role.AUDITOR})
PERSONS_ONLY = frozenset({Role.ADMIN, Role.SECURITY_OFFICER})
"""Roles a service never holds: they decide about other accounts (who exists, who holds what,
who is approved or re-enabled), and a service's API key has no second factor and is handed
to the administrator who made it, who would then be the "second person" of their own
requests."""


class Decision(StrEnum):
    ALLOWED = "allowed"
    NOT_FOUND = "not_found"
    """Refused on a tenant the principal holds no grant on: answered as if it did not exist."""
    FORBIDDEN = "forbidden"
    PURPOSE_REQUIRED = "purpose_required"
    """A PII operation that states no purpose."""
    PURPOSE_NOT_PERMITTED = "purpose_not_permitted"
    """A PII operation for a purpose outside the vocabulary."""
    SEPARATION_OF_DUTIES = "separation_of_duties"
    """Grants that would put ``pii-reader`` with a service-wide role on one account."""
    PII_ON_EVERY_TENANT = "pii_on_every_tenant"
    """A ``pii-reader`` grant on ``*``: PII is granted on named tenants only."""
    SECOND_PERSON_REQUIRED = "second_person_required"
    """An approval asked of the account's own creator, or of a service."""
    PERSONS_ONLY_ROLE = "persons_only_role"
    """``admin`` or ``security-officer`` for a service (``PERSONS_ONLY``)."""

    @property
    def allowed(self) -> bool:
        return self is Decision.ALLOWED


def decide(principal: Principal, action: Action, tenant_id: str | None = None,
           purpose: str | None = None) -> Decision:
    """The decision on ``principal`` taking ``action`` (on ``tenant_id``, for a tenant's
    action) for ``purpose``. The purpose is part of the question only for a PII operation;
    any other action is decided without it."""
    if action not in PURPOSE_ACTIONS:
        return _decide(principal, action, tenant_id, None)
    if purpose in PURPOSES:
        return _decide(principal, action, tenant_id, purpose)
    return _refused(principal, tenant_id, Decision.PURPOSE_REQUIRED if purpose is None
                    else Decision.PURPOSE_NOT_PERMITTED)


@functools.lru_cache(maxsize=4096)
def _decide(principal: Principal, action: Action, tenant_id: str | None,
            purpose: str | None) -> Decision:
    context = {} if purpose is None else {"purpose": purpose}
    if is_authorized(principal, action, tenant_id, context):
        return Decision.ALLOWED
    return _refused(principal, tenant_id, Decision.FORBIDDEN)


def _refused(principal: Principal, tenant_id: str | None, reason: Decision) -> Decision:
    if tenant_id is not None and not holds_grant_on(principal, tenant_id):
        return Decision.NOT_FOUND
    return reason


def holds_grant_on(principal: Principal, tenant_id: str) -> bool:
    """Whether any of the principal's grants, of any role, reaches ``tenant_id``."""
    return any(grant.tenant in (tenant_id, ALL_TENANTS) for grant in principal.grants)


def is_permitted_purpose(purpose: str | None) -> bool:
    """Whether ``purpose`` is one of the vocabulary's (exactly: no case folding, no
    trimming). Also what keeps a stated purpose out of the security log unless it is one."""
    return purpose in PURPOSES


def require_permitted_purpose(purpose: str | None) -> None:
    """The purpose check again where PII is revealed or searched, whoever the caller: a
    service does not rely on its caller having asked ``decide``."""
    if purpose not in PURPOSES:
        raise PurposeNotPermittedError()


def decide_grants(grants: Iterable[Grant], kind: str = "person") -> Decision:
    """Whether one account (of ``kind``: "person" or "service") may hold these grants
    together: ``pii-reader`` only on named tenants (a grant on ``*`` would reach every
    seller's buyers at once, and every seller added later), and never beside a service-wide
    role (``NEVER_WITH_PII``); ``admin`` and ``security-officer`` for persons only
    (``PERSONS_ONLY``). The Cedar guardrails forbid the first two at every request as well,
    in case such grants exist anyway."""
    grants = list(grants)
    if kind != "person" and any(g.role in PERSONS_ONLY for g in grants):
        return Decision.PERSONS_ONLY_ROLE
    if any(g.role is Role.PII_READER and g.tenant == ALL_TENANTS for g in grants):
        return Decision.PII_ON_EVERY_TENANT
    roles = {grant.role for grant in grants}
    if Role.PII_READER in roles and not roles.isdisjoint(NEVER_WITH_PII):
        return Decision.SEPARATION_OF_DUTIES
    return Decision.ALLOWED


def decide_approval(approver: Principal, created_by: str | None) -> Decision:
    """Whether ``approver`` may approve or reject an account ``created_by`` created: the
    second person is a person (a service is some administrator's key) and never the creator,
    whatever roles it holds."""
    if approver.kind != "person" or approver.id == created_by:
        return Decision.SECOND_PERSON_REQUIRED
    return Decision.ALLOWED
