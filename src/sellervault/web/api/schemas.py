"""API shapes used by more than one router (defined once)."""

from __future__ import annotations

from pydantic import BaseModel

from sellervault.access.roles import Grant


class GrantOut(BaseModel):
    role: str
    tenant: str

    @classmethod
    def of(cls, grant: Grant) -> GrantOut:
        return cls(role=grant.role.value, tenant=grant.tenant)
