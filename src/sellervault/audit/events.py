"""Typed security events: ids, enums, counts and caller addresses, never free text or PII."""

from __future__ import annotations

from dataclasses import asdict, dataclass
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

    @property
    def tag(self) -> str:
        return f"{self.action}:{self.outcome.value}"

    def fields(self) -> dict[str, Any]:
        flat = asdict(self)
        actor = flat.pop("actor")
        flat.update(actor)
        flat["outcome"] = self.outcome.value
        flat["channel"] = self.actor.channel.value
        return flat
