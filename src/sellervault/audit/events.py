"""Typed security events: ids, enums, counts and caller addresses, never free text or PII.

Every field that names something is one enumerated vocabulary: the action
(``access.actions.Action``, the permission vocabulary every route declares), the outcome,
the kind of target (``TargetType``) and the reason (``Reason``: every error code the service
answers with is one of them). A call site cannot pass free text: each is read as its enum's
value when the event is written, so a plain string fails there, loudly, before anything is
written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypedDict

from sellervault.access.actions import Action
from sellervault.crypto.pseudonyms import PATTERN

_PSEUDONYM = re.compile(PATTERN)


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


class TargetType(StrEnum):
    """What an event is about (its ``target_id`` names which one)."""

    ACCOUNT = "account"
    ORDER = "order"
    CANARY = "canary"
    SECURITY_EVENT = "security_event"
    ROOT_KEY = "root-key"
    TENANT_KEY = "tenant-key"
    SYSTEM_KEY = "system-key"  # by its name (``security-log``), never the key
    DELETION_REQUEST = "deletion-request"
    LEGAL_HOLD = "legal-hold"
    RESTRICTION = "restriction"  # a buyer's processing restricted (records.restrictions)
    CERTIFICATE = "certificate"
    JOB = "job"
    TENANT = "tenant"
    PII_REVEALS = "pii-reveals"  # every reveal and search (a kill switch's subject)
    API_KEY = "api-key"  # by its key id, never the key
    ALERT = "alert"
    NOTIFICATION = "notification"  # one alert's notification on one channel (its outbox row)


class Reason(StrEnum):
    """Why something was refused or failed: the ``reason`` of its event, and the error code
    of its response (one vocabulary for both, so an alert and an answer say the same)."""

    # Errors of a domain (each error class's ``code``).
    ACCESS_ERROR = "access_error"
    ACCOUNT_ERROR = "account_error"
    RECORD_ERROR = "record_error"
    ACCOUNT_EXISTS = "account_exists"
    ALREADY_INITIALIZED = "already_initialized"
    BUDGET_EXHAUSTED = "budget_exhausted"
    ERASED = "erased"
    TENANT_ERASED = "tenant_erased"
    FORBIDDEN = "forbidden"
    INVALID_ACCOUNT = "invalid_account"
    INVALID_CREDENTIALS = "invalid_credentials"
    INVALID_SEARCH = "invalid_search"
    NOT_FOUND = "not_found"
    NOT_PENDING = "not_pending"
    PASSWORD_CHANGE_REQUIRED = "password_change_required"  # noqa: S105 - a code, not a secret
    PASSWORD_POLICY = "password_policy"  # noqa: S105
    PASSWORD_REUSED = "password_reused"  # noqa: S105 - one of the account's last ten
    PASSWORD_TOO_RECENT = "password_too_recent"  # noqa: S105 - changed less than a day ago
    PASSWORD_EXPIRED = "password_expired"  # noqa: S105 - older than 365 days: must change
    PURPOSE_NOT_PERMITTED = "purpose_not_permitted"
    SECOND_PERSON_REQUIRED = "second_person_required"
    SECURITY_OFFICER_REQUIRED = "security_officer_required"  # a canary-locked account (403)
    OWN_ALERT = "own_alert"  # an officer handling an alert about themselves (403)
    ASSIGNEE_NOT_OFFICER = "assignee_not_officer"  # an alert assigned to no active officer
    TENANT_KEYS_BUSY = "tenant_keys_busy"
    COUNTERS_UNAVAILABLE = "counters_unavailable"  # the shared counters (Redis) unreachable
    UNAUTHENTICATED = "unauthenticated"
    LOGIN_THROTTLED = "login_throttled"  # 100 failed sign-ins from one address in a day
    ACCOUNT_LOCKED = "account_locked"  # logged only: answered as invalid_credentials
    TOO_MANY_FAILURES = "too_many_failures"  # why an account was locked or disabled
    INVALID_ENROLMENT = "invalid_enrolment"
    INVALID_TOTP = "invalid_totp"  # at enrolment: the new authenticator's code is wrong
    RECOVERY_CODE = "recovery_code"  # a sign-in that used a recovery code, not a TOTP code
    NOT_A_SESSION = "not_a_session"  # sign-out asked with an API key
    ACCOUNT_STATE = "account_state"  # a status change that does not apply (409)
    KILL_SWITCH = "kill_switch"  # a request an operator's kill switch stops
    INVALID_SWITCH = "invalid_switch"
    SWITCH_STATE = "switch_state"  # set already (409) or not set (404)
    APPROVAL_REQUIRED = "approval_required"  # a service created pending a second person
    NO_GRANT_ON_TENANT = "no_grant_on_tenant"  # answered 404 not_found, logged as this
    ALERT_STATE = "alert_state"  # an alert change that does not apply (409)
    NOTIFICATION_STATE = "notification_state"  # a retry of a notification not dead (409)
    PROCESSING_RESTRICTED = "processing_restricted"  # the buyer's processing is restricted
    RESTRICTION_STATE = "restriction_state"  # restricted already, or lifted already (409)
    INVALID_RESTRICTION = "invalid_restriction"  # a restriction that says the wrong things
    INVALID_CORRECTION = "invalid_correction"  # a correction of the wrong field or value
    CORRECTION_STATE = "correction_state"  # an order held, a canary, a restricted buyer (409)
    DELETION_STATE = "deletion_state"  # a deletion request change that does not apply (409)
    INVALID_DELETION = "invalid_deletion"  # a deletion request that says the wrong things (422)
    LEGAL_HOLD = "legal_hold"  # a deletion of an order under an active legal hold (409)
    REVIEW_STATE = "review_state"  # a log review that does not go further than the last (409)
    INVALID_REVIEW = "invalid_review"  # a log review up to an event not written yet (422)
    LAST_ADMIN = "last_admin"  # the change would leave no active administrator (409)
    GRANT_STATE = "grant_state"  # a grant held already (409)
    KEY_STATE = "key_state"  # an API key revoked or expired already (409)
    END_DATE = "end_date"  # why an account was disabled: its end date passed
    INACTIVE = "inactive"  # why an account was disabled: unused for 90 days
    CANARY_ACCESS = "canary_access"  # why an account was disabled: it touched a canary
    RETRIEVAL_VOLUME = "retrieval_volume"  # why a person was disabled: unusual reveals
    ADDRESS_NOT_ALLOWED = "address_not_allowed"  # outside the account's own networks
    # The web layer's own.
    INVALID_REQUEST = "invalid_request"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    TOO_LARGE = "too_large"
    HTTP_ERROR = "http_error"
    INTEGRITY_FAILURE = "integrity_failure"
    INTERNAL_ERROR = "internal_error"
    AUDIT_UNAVAILABLE = "audit_unavailable"
    # The HTTP layer's refusals (``web.limits.Refusal``).
    MALFORMED_REQUEST = "malformed_request"
    HEADERS_TOO_LARGE = "headers_too_large"
    SERVER_BUSY = "server_busy"
    HEAD_TIMEOUT = "head_timeout"
    BODY_TIMEOUT = "body_timeout"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    NETWORK_NOT_ALLOWED = "network_not_allowed"
    # Periodic jobs.
    JOB_FAILED = "job_failed"
    JOB_RUNNING = "job_running"
    JOB_HELD_OFF = "job_held_off"  # a job's next run put further off than its interval
    # Alert notifications: why a delivery attempt failed (notifications.errors).
    NOTIFICATION_REFUSED = "notification_refused"  # an HTTP or SMTP answer other than success
    NOTIFICATION_UNREACHABLE = "notification_unreachable"  # no connection, or no answer in time
    NOTIFICATION_TLS = "notification_tls"  # TLS failed: certificate not trusted, wrong name
    STARTTLS_UNAVAILABLE = "starttls_unavailable"  # the SMTP server offers no STARTTLS
    NOTIFICATION_NOT_CONFIGURED = "notification_not_configured"  # its channel was unset since
    NOTIFICATION_FAILED = "notification_failed"  # any other failure (logged by class)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted, from where, through which channel, in which request."""

    channel: Channel
    actor_id: str | None = None
    source_ip: str | None = None
    request_id: str | None = None


SYSTEM_ACTOR = Actor(channel=Channel.SYSTEM, source_ip="local")
"""Who acts when nobody asked: the scheduler's jobs and what they change."""


class EventFields(TypedDict, total=False):
    """What a writer says about an event beside its action, outcome and actor (typed, so a
    call site cannot pass free text where the vocabulary belongs)."""

    tenant_id: str | None
    target_type: TargetType | None
    target_id: str | None
    purpose: str | None
    status: int | None
    count: int | None
    reason: Reason | None
    criteria: str | None
    buyer: str | None


def _pseudonym(buyer: str | None) -> str | None:
    """A buyer's pseudonym, or a refusal: the one field that is not an enum is held to its
    shape, so a value (an email) given by mistake fails before anything is written."""
    if buyer is not None and not _PSEUDONYM.fullmatch(buyer):
        raise ValueError("an event names a buyer by pseudonym only (crypto.pseudonyms)")
    return buyer


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    action: Action
    outcome: Outcome
    actor: Actor
    tenant_id: str | None = None
    target_type: TargetType | None = None
    target_id: str | None = None
    purpose: str | None = None
    status: int | None = None
    count: int | None = None
    reason: Reason | None = None
    criteria: str | None = None
    """Terms of a fixed vocabulary that qualify the action, never values: the kinds of
    criteria a search used; the role a grant names (``grants:add``, ``grants:revoke``); the
    scope of a deletion request (``order``, ``buyer``, ``tenant``)."""
    buyer: str | None = None
    """The keyed pseudonym of the one buyer the event is about (``crypto.pseudonyms``): how an
    investigator finds a buyer's events, and what the retrieval-volume detector counts."""

    @property
    def tag(self) -> str:
        return f"{self.action}:{self.outcome.value}"

    def fields(self) -> dict[str, Any]:
        """The event as one flat row (the actor's fields inlined, enums as their values)."""
        actor, target_type, reason = self.actor, self.target_type, self.reason
        return {
            "action": self.action.value, "outcome": self.outcome.value,
            "tenant_id": self.tenant_id,
            "target_type": None if target_type is None else target_type.value,
            "target_id": self.target_id, "purpose": self.purpose, "status": self.status,
            "count": self.count, "reason": None if reason is None else reason.value,
            "criteria": self.criteria, "buyer": _pseudonym(self.buyer),
            "channel": actor.channel.value,
            "actor_id": actor.actor_id,
            "source_ip": actor.source_ip, "request_id": actor.request_id,
        }
