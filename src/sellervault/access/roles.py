"""Built-in roles and grants. Roles are narrow; only ``pii-reader`` can ever see PII."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ALL_TENANTS = "*"
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_TENANT_ID = re.compile(TENANT_ID_PATTERN)


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    SECURITY_OFFICER = "security-officer"
    AUDITOR = "auditor"
    ANALYST = "analyst"
    PII_READER = "pii-reader"
    INGEST = "ingest"


# Roles whose actions are service-wide, so they can only be granted on every tenant.
GLOBAL_ROLES = frozenset({Role.ADMIN, Role.OPERATOR, Role.SECURITY_OFFICER, Role.AUDITOR})


def is_tenant_id(value: str) -> bool:
    return bool(_TENANT_ID.fullmatch(value))


@dataclass(frozen=True, slots=True)
class Grant:
    role: Role
    tenant: str

    def __post_init__(self) -> None:
        if self.tenant != ALL_TENANTS and not is_tenant_id(self.tenant):
            raise ValueError("a grant's tenant is a tenant id or '*'")
        if self.role in GLOBAL_ROLES and self.tenant != ALL_TENANTS:
            raise ValueError(f"role {self.role.value} is service-wide: grant it on '*'")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated account as the authorizer sees it."""

    id: str
    kind: str
    grants: tuple[Grant, ...]

    @property
    def roles(self) -> frozenset[Role]:
        return frozenset(grant.role for grant in self.grants)
