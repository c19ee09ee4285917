"""What a notification says: built field by field from the ``Alert`` dataclass, which holds
ids, the rule, the severity, times and the status, and no PII by construction (an alert never
holds buyer data; its subject, which can be a caller's address, is not in the dataclass). The
webhook's body and the e-mail's text are made from this one value, so neither can say more.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from sellervault.monitoring.alerts import Alert

VERSION = 1  # of the body's shape; a receiver should refuse a version it does not know


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """Everything a notification carries. Adding a field here is adding it to every message:
    it must be an id, a fixed vocabulary term or a time, never data of a buyer."""

    notification_id: str
    service: str
    alert_id: str
    rule: str
    severity: str
    principal_id: str | None
    created_at: str
    status: str


def notice_of(alert: Alert, notification_id: str, service: str) -> AlertNotice:
    """The notice of ``alert`` (as it stands now: its status at the time of sending)."""
    return AlertNotice(notification_id=notification_id, service=service, alert_id=alert.id,
                       rule=alert.rule, severity=alert.severity,
                       principal_id=alert.principal_id, created_at=alert.created_at,
                       status=alert.status)


def json_body(notice: AlertNotice) -> bytes:
    """The webhook's body: compact JSON with sorted keys (the exact bytes are signed)."""
    fields = asdict(notice)
    document = {"version": VERSION, "type": "alert",
                "notification_id": fields.pop("notification_id"),
                "service": fields.pop("service"),
                "alert": {"id": fields.pop("alert_id"), **fields}}
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode()


def email_subject(notice: AlertNotice) -> str:
    return (f"[{notice.service}] {notice.severity} alert: {notice.rule} ({notice.alert_id})")


def email_text(notice: AlertNotice) -> str:
    """The e-mail's plain text: the same fields, and where to look next."""
    lines = [
        f"SellerVault ({notice.service}) raised an alert.",
        "",
        f"alert:     {notice.alert_id}",
        f"rule:      {notice.rule}",
        f"severity:  {notice.severity}",
        f"account:   {notice.principal_id or '(none: an address)'}",
        f"raised at: {notice.created_at}",
        f"status:    {notice.status}",
        "",
        "Work it with `sellervault alerts list` (security officer); the events behind it are",
        "in the security log. This message holds no buyer data.",
        "",
        f"notification {notice.notification_id}",
    ]
    return "\n".join(lines) + "\n"
