"""Typed security events: ids, enums, counts and caller addresses, never free text or PII."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Channel(StrEnum):
    API = "api"
    CLI = "cli"
    DASHBOARD = "dashboard"
    SYSTEM = "system"


class Outcome(StrEnum):
    SUCCESS = "success"
    DENIED = "denied"
    FAILED = "failed"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted, from where, through which channel, in which request."""

    channel: Channel
    actor_id: str | None = None
    source_ip: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    action: str
    """A permission action of sellervault.access.actions (e.g. ``orders:reveal``)."""
    outcome: Outcome
    actor: Actor
    tenant_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    purpose: str | None = None
    status: int | None = None
    count: int | None = None
    reason: str | None = None
    """An error code from sellervault's fixed vocabulary, never a message."""
    criteria: str | None = None
    """The kinds of criteria a search used, from a fixed vocabulary, never their values."""

    @property
    def tag(self) -> str:
        return f"{self.action}:{self.outcome.value}"

    def fields(self) -> dict[str, Any]:
        """The event as one flat row (the actor's fields inlined, enums as their values)."""
        actor = self.actor
        return {
            "action": self.action, "outcome": self.outcome.value, "tenant_id": self.tenant_id,
            "target_type": self.target_type, "target_id": self.target_id,
            "purpose": self.purpose, "status": self.status, "count": self.count,
            "reason": self.reason, "criteria": self.criteria, "channel": actor.channel.value,
            "actor_id": actor.actor_id,
            "source_ip": actor.source_ip, "request_id": actor.request_id,
        }
