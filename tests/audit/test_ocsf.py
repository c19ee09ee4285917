"""audit.ocsf: every action maps to an OCSF 1.3.0 class with the attributes the class
requires (OCSF schema: base event metadata, time, class, category, activity, type, severity,
status; API Activity: actor, api, src_endpoint; Authentication: user, and service or
dst_endpoint), ids consistent, nothing of the event lost or added."""

from __future__ import annotations

from typing import Any

import pytest

from sellervault.access.actions import Action
from sellervault.audit.ocsf import API_ACTIVITY, AUTHENTICATION, OCSF_VERSION, to_ocsf

EVENT: dict[str, Any] = {
    "seq": 42, "occurred_at": "2026-12-05T10:00:00.250000Z", "channel": "api",
    "action": "orders:reveal", "outcome": "success", "actor_id": "acc_reader",
    "tenant_id": "acme", "target_type": "order", "target_id": "ord_1",
    "source_ip": "203.0.113.9", "request_id": "req-1", "purpose": "fulfillment",
    "status": 200, "count": 1, "reason": None, "criteria": None,
    "buyer": "byr_" + "a" * 32, "prev_hash": "e" * 64, "hash": "f" * 64}
BASE = {"class_uid", "category_uid", "activity_id", "type_uid", "severity_id", "status_id",
        "time", "metadata"}
# From the OCSF schema's own definitions (ocsf-schema: events/application/api_activity.json,
# events/iam/authentication.json, objects/metadata.json, objects/actor.json): each class's
# required attributes, its activity ids, and its "at least one of" constraints.
SCHEMA: dict[int, dict[str, Any]] = {
    6003: {"category": 6, "required": {"actor", "api", "src_endpoint"},
           "activities": {0, 1, 2, 3, 4, 99}, "at_least_one": [set()]},
    3002: {"category": 3, "required": {"user"}, "activities": {0, 1, 2, 3, 4, 5, 6, 99},
           "at_least_one": [{"service", "dst_endpoint"}]},
}
ACTOR_AT_LEAST_ONE = {"process", "user", "invoked_by", "session", "app_name", "app_uid"}
SEVERITIES, STATUSES = {0, 1, 2, 3, 4, 5, 6, 99}, {0, 1, 2, 99}


def _nulls(value: Any, path: str = "") -> list[str]:
    """Where the mapping left a null: OCSF omits an attribute it has no value for."""
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("outcome", ["success", "denied", "failed", "error"])
@pytest.mark.parametrize("action", [a.value for a in Action])
def test_every_mapping_is_valid_as_the_schema_defines_its_class(action: str,
                                                                outcome: str) -> None:
    bare = {**EVENT, "action": action, "outcome": outcome, "actor_id": None,
            "request_id": None, "target_id": None, "tenant_id": None, "buyer": None,
            "purpose": None, "status": None, "count": None}
    for event in (EVENT, bare):
        mapped = to_ocsf({**event, "action": action, "outcome": outcome})
        schema = SCHEMA[mapped["class_uid"]]
        assert mapped["category_uid"] == schema["category"]
        assert set(mapped) >= BASE | schema["required"]
        assert mapped["activity_id"] in schema["activities"]
        assert all(not group or group & set(mapped) for group in schema["at_least_one"])
        assert mapped["severity_id"] in SEVERITIES and mapped["status_id"] in STATUSES
        assert {"product", "version"} <= set(mapped["metadata"])
        if "actor" in mapped:
            assert ACTOR_AT_LEAST_ONE & set(mapped["actor"])
        assert isinstance(mapped["time"], int)
        assert mapped["type_name"] == f"{mapped['class_name']}: {mapped['activity_name']}"
        if mapped["activity_id"] == 99:  # Other: the source's own name of the activity
            assert mapped["activity_name"] == action
        assert _nulls(mapped) == []


@pytest.mark.parametrize("action", [a.value for a in Action])
def test_every_action_maps_to_a_class_with_its_required_attributes(action: str) -> None:
    mapped = to_ocsf({**EVENT, "action": action})
    assert set(mapped) >= BASE
    assert mapped["type_uid"] == mapped["class_uid"] * 100 + mapped["activity_id"]
    assert mapped["category_uid"] == mapped["class_uid"] // 1000
    assert mapped["metadata"]["version"] == OCSF_VERSION
    assert {"name", "vendor_name"} <= set(mapped["metadata"]["product"])
    if mapped["class_uid"] == AUTHENTICATION:
        assert mapped["user"]["uid"] and mapped["service"]["name"] == "SellerVault"
        assert mapped["activity_id"] in (1, 2, 99)
    else:
        assert mapped["class_uid"] == API_ACTIVITY
        assert {"actor", "api", "src_endpoint"} <= set(mapped)
        assert mapped["api"]["operation"] == action
        assert mapped["activity_id"] in (1, 2, 3, 4, 99)


def test_a_reveal_is_an_api_read_with_everything_of_the_event_kept() -> None:
    mapped = to_ocsf(EVENT)
    assert (mapped["class_uid"], mapped["activity_id"], mapped["status_id"]) == (6003, 2, 1)
    assert mapped["time"] == 1_796_464_800_250  # 2026-12-05T10:00:00.25Z, in ms
    assert mapped["metadata"]["uid"] == "42"
    assert mapped["actor"] == {"user": {"uid": "acc_reader"}}
    assert mapped["src_endpoint"] == {"ip": "203.0.113.9"}
    assert mapped["api"] == {"operation": "orders:reveal", "request": {"uid": "req-1"}}
    assert mapped["resources"] == [{"type": "order", "uid": "ord_1"}]
    assert mapped["http_response"] == {"code": 200}
    assert mapped["unmapped"] == {"channel": "api", "outcome": "success", "tenant_id": "acme",
                                  "purpose": "fulfillment", "count": 1,
                                  "buyer": "byr_" + "a" * 32, "prev_hash": "e" * 64,
                                  "hash": "f" * 64}
    assert (mapped["class_name"], mapped["category_name"], mapped["type_name"],
            mapped["severity"]) == ("API Activity", "Application Activity",
                                    "API Activity: Read", "Informational")


def test_an_export_of_the_log_is_a_read_of_it() -> None:
    mapped = to_ocsf({**EVENT, "action": "audit:export", "target_type": "security_event",
                      "target_id": "41", "criteria": "ocsf:action", "buyer": None})
    assert (mapped["class_uid"], mapped["activity_id"], mapped["type_uid"]) == (6003, 2, 600302)
    assert mapped["unmapped"]["criteria"] == "ocsf:action" and mapped["unmapped"]["count"] == 1


@pytest.mark.parametrize(("action", "activity"), [("session:create", 1), ("session:delete", 2),
                                                  ("password:change", 99)])
def test_signing_in_and_out_is_authentication(action: str, activity: int) -> None:
    failed = to_ocsf({**EVENT, "action": action, "outcome": "denied", "actor_id": None,
                      "target_type": "account", "target_id": "acc_victim", "status": 401,
                      "reason": "invalid_credentials"})
    assert (failed["class_uid"], failed["activity_id"], failed["type_uid"]) == (
        3002, activity, 300200 + activity)
    assert (failed["status_id"], failed["status"], failed["severity_id"]) == (2, "Failure", 3)
    assert failed["status_detail"] == "invalid_credentials"
    assert failed["user"] == {"uid": "acc_victim"}
    assert failed["actor"] == {"app_name": "sellervault-api"}


def test_a_command_on_the_host_is_named_not_addressed() -> None:
    mapped = to_ocsf({**EVENT, "action": "audit:verify", "channel": "cli", "actor_id": None,
                      "source_ip": "local", "request_id": None})
    assert mapped["src_endpoint"] == {"name": "local"}
    assert "request" not in mapped["api"]
