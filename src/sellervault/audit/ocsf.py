"""Security events as OCSF (Open Cybersecurity Schema Framework, version 1.3.0) for a SIEM.

Signing in and out, changing a password and enrolling are the Authentication class (3002,
category 3 Identity & Access Management: Logon 1, Logoff 2, the others Other 99). Every
other event is API Activity (6003, category 6 Application Activity), its activity from the
action's verb: Create 1, Read 2, Update 3, Delete 4, Other 99 (then ``activity_name`` is the
action, as the schema asks for Other). ``type_uid`` is ``class_uid * 100 + activity_id``;
``time`` is milliseconds since the epoch; ``metadata.uid`` is the event's number in the
chain. Fields OCSF has no attribute for (the channel, tenant, purpose, count, criteria,
buyer pseudonym, the event's MAC and the one before it) are kept under ``unmapped``, so
nothing in the log is lost on the way; the mapping adds nothing that is not in the event
(no PII: the event holds none).

What each class requires, as the schema (ocsf-schema 1.3) has it: every event
``activity_id``, ``category_uid``, ``class_uid``, ``type_uid``, ``severity_id``, ``time``
and ``metadata`` (its ``product`` and ``version``); API Activity also ``actor`` (at least
one of its ``user``, ``app_name``, ...), ``api`` (its ``operation``) and ``src_endpoint``;
Authentication ``user``, and ``service`` or ``dst_endpoint``. ``tests/audit/test_ocsf.py``
holds the same list.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

from sellervault import __version__

OCSF_VERSION = "1.3.0"
PRODUCT = {"name": "SellerVault", "vendor_name": "SellerVault", "version": __version__}

AUTHENTICATION, API_ACTIVITY = 3002, 6003
CATEGORY = {AUTHENTICATION: 3, API_ACTIVITY: 6}
SIGN_IN = {"session:create": 1, "session:delete": 2, "password:change": 99,
           "enrolment:start": 99, "enrolment:finish": 99}
CREATE, READ, UPDATE, DELETE, OTHER = 1, 2, 3, 4, 99
VERBS = {
    CREATE: {"create", "ingest", "add", "raise", "create-tenant", "init"},
    READ: {"read", "list", "reveal", "search", "verify", "pseudonym", "touched", "export"},
    UPDATE: {"disable", "enable", "lock", "approve", "reject", "reenrol", "end-date",
             "networks", "rotate", "rotate-root", "rotate-tenant", "set", "acknowledge",
             "assign", "close", "refresh", "run", "review", "expiring", "deliver",
             "checkpoint", "dead"},
    DELETE: {"delete", "revoke", "offboard", "clear", "purge"},
}
_ACTIVITY = {verb: activity for activity, verbs in VERBS.items() for verb in verbs}
STATUS = {"success": (1, "Success"), "denied": (2, "Failure"), "failed": (2, "Failure"),
          "error": (2, "Failure")}
SEVERITY = {"success": 1, "failed": 2, "denied": 3, "error": 4}
"""Informational, Low, Medium, High: a refusal is what an analyst looks at first."""
_UNMAPPED = ("channel", "outcome", "tenant_id", "purpose", "count", "criteria", "buyer",
             "prev_hash", "hash")
CLASS_NAME = {AUTHENTICATION: "Authentication", API_ACTIVITY: "API Activity"}
CATEGORY_NAME = {AUTHENTICATION: "Identity & Access Management",
                 API_ACTIVITY: "Application Activity"}
ACTIVITY_NAME = {AUTHENTICATION: {1: "Logon", 2: "Logoff"},
                 API_ACTIVITY: {CREATE: "Create", READ: "Read", UPDATE: "Update",
                                DELETE: "Delete"}}
"""The captions of the schema's enums (the string siblings of the ids). For Other (99) the
schema asks for the source's own name of the activity: the action."""
SEVERITY_NAME = {1: "Informational", 2: "Low", 3: "Medium", 4: "High"}


def activity_of(action: str) -> tuple[int, int]:
    """The (class_uid, activity_id) of an action."""
    if action in SIGN_IN:
        return AUTHENTICATION, SIGN_IN[action]
    return API_ACTIVITY, _ACTIVITY.get(action.partition(":")[2], OTHER)


def _endpoint(address: str | None) -> dict[str, str] | None:
    if address is None:
        return None
    try:
        return {"ip": str(ipaddress.ip_address(address))}
    except ValueError:
        return {"name": address}  # "local": a command on the vault's own host


def to_ocsf(event: dict[str, Any]) -> dict[str, Any]:
    """One event, as the audit API gives it, in OCSF."""
    class_uid, activity_id = activity_of(event["action"])
    status_id, status = STATUS[event["outcome"]]
    activity_name = ACTIVITY_NAME[class_uid].get(activity_id, event["action"])
    moment = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
    mapped: dict[str, Any] = {
        "class_uid": class_uid, "category_uid": CATEGORY[class_uid],
        "activity_id": activity_id, "type_uid": class_uid * 100 + activity_id,
        "class_name": CLASS_NAME[class_uid], "category_name": CATEGORY_NAME[class_uid],
        "activity_name": activity_name,
        "type_name": f"{CLASS_NAME[class_uid]}: {activity_name}",
        "severity_id": SEVERITY[event["outcome"]],
        "severity": SEVERITY_NAME[SEVERITY[event["outcome"]]],
        "status_id": status_id, "status": status,
        "time": int(moment.timestamp() * 1000),
        "metadata": {"version": OCSF_VERSION, "product": PRODUCT, "uid": str(event["seq"]),
                     "log_name": "security_events", "original_time": event["occurred_at"]},
        "actor": ({"user": {"uid": event["actor_id"]}} if event.get("actor_id")
                  else {"app_name": f"sellervault-{event['channel']}"}),
        "src_endpoint": _endpoint(event.get("source_ip")) or {"name": event["channel"]},
        "unmapped": {name: event.get(name) for name in _UNMAPPED
                     if event.get(name) is not None},
    }
    if event.get("reason"):
        mapped["status_detail"] = event["reason"]
    if event.get("status") is not None:
        mapped["http_response"] = {"code": event["status"]}
    if class_uid == AUTHENTICATION:
        mapped["user"] = {"uid": event.get("target_id") or event.get("actor_id") or "unknown"}
        mapped["service"] = {"name": "SellerVault"}
    else:
        mapped["api"] = {"operation": event["action"]}
        if event.get("request_id"):
            mapped["api"]["request"] = {"uid": event["request_id"]}
        resource = {name: event[key] for name, key in (("type", "target_type"),
                                                       ("uid", "target_id"))
                    if event.get(key) is not None}
        if resource:
            mapped["resources"] = [resource]
    return mapped
