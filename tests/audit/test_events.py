"""The event type (``audit.events``): typed fields only, each from one vocabulary.

- An event has ids, enums, counts and addresses, never free text or PII; it is immutable and
  its flat form is exactly the columns the MAC covers.
- Action, outcome, target type and reason each come from one enumerated vocabulary: a plain
  string where an enum belongs is refused when the event is written, and nothing is written.
- Every error code the service answers with, and every refusal of the HTTP layer, is a
  reason of the vocabulary (so an event can always say why).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from typing import Any

import pytest
from sqlalchemy import String

import sellervault
from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.chain import CHAINED_FIELDS
from sellervault.audit.events import Actor, Channel, Outcome, Reason, SecurityEvent, TargetType
from sellervault.audit.models import EventRow
from sellervault.runtime import Runtime
from sellervault.web.errors import HTTP_CODES
from sellervault.web.limits import Refusal

API_CALLER = Actor(Channel.API, actor_id="acc_0123456789abcdef", source_ip="203.0.113.9",
                   request_id="req-42")


# -- the event type: typed fields only -------------------------------------------------------

def test_security_event_has_only_typed_fields() -> None:
    assert [field.name for field in dataclasses.fields(SecurityEvent)] == [
        "action", "outcome", "actor", "tenant_id", "target_type", "target_id", "purpose",
        "status", "count", "reason", "criteria", "buyer"]
    assert [field.name for field in dataclasses.fields(Actor)] == [
        "channel", "actor_id", "source_ip", "request_id"]
    with pytest.raises(TypeError):
        SecurityEvent(Action.SESSION_CREATE, Outcome.DENIED, API_CALLER,  # type: ignore[call-arg]
                      message="login failed for alice@example.test")


def test_security_event_is_immutable() -> None:
    event = SecurityEvent(Action.ORDERS_READ, Outcome.SUCCESS, API_CALLER)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.reason = Reason.FORBIDDEN  # type: ignore[misc]


def test_event_fields_are_exactly_the_chained_columns() -> None:
    """Every stored column is covered by the MAC, and none can hold a message or a body."""
    event = SecurityEvent(Action.ORDERS_READ, Outcome.SUCCESS, API_CALLER)
    assert set(event.fields()) | {"seq", "occurred_at"} == set(CHAINED_FIELDS)
    columns = EventRow.__table__.columns
    assert set(columns.keys()) == set(CHAINED_FIELDS) | {"prev_hash", "hash"}
    for column in columns:
        if isinstance(column.type, String):
            assert column.type.length is not None and column.type.length <= 64, column.name


def test_event_tag_and_flat_fields() -> None:
    event = SecurityEvent(Action.ORDERS_REVEAL, Outcome.DENIED, API_CALLER, tenant_id="acme",
                          purpose="marketing", status=403, reason=Reason.PURPOSE_NOT_PERMITTED)
    assert event.tag == "orders:reveal:denied"
    assert event.fields() == {
        "action": "orders:reveal", "outcome": "denied", "channel": "api",
        "actor_id": "acc_0123456789abcdef", "source_ip": "203.0.113.9", "request_id": "req-42",
        "tenant_id": "acme", "target_type": None, "target_id": None, "purpose": "marketing",
        "status": 403, "count": None, "reason": "purpose_not_permitted", "criteria": None,
        "buyer": None}


@pytest.mark.parametrize("fields", [{"target_type": "order"}, {"reason": "anything at all"},
                                    {"buyer": "alex.rivera@example.test"}])
def test_free_text_where_the_vocabulary_belongs_is_refused_and_nothing_written(
        runtime: Runtime, fields: dict[str, Any]) -> None:
    auditor = Auditor(runtime.audit, API_CALLER)
    before = _event_count(runtime)
    with pytest.raises((AttributeError, ValueError)), runtime.store.transaction() as session:
        auditor.record(session, Action.ORDERS_READ, Outcome.SUCCESS, **fields)
    with pytest.raises(AttributeError), runtime.store.transaction() as session:
        auditor.record(session, "orders:read", Outcome.SUCCESS)  # type: ignore[arg-type]
    assert _event_count(runtime) == before
    assert not auditor.committed


def _event_count(rt: Runtime) -> int:
    with rt.store.engine.connect() as connection:
        return len(connection.execute(EventRow.__table__.select()).all())


def _error_classes() -> list[type[Exception]]:
    """Every exception class of SellerVault that answers with an error code."""
    found = []
    for module_info in pkgutil.walk_packages(sellervault.__path__, "sellervault."):
        if "migrations" in module_info.name:
            continue
        module = importlib.import_module(module_info.name)
        for _, member in inspect.getmembers(module, inspect.isclass):
            if (issubclass(member, Exception) and member.__module__ == module.__name__
                    and "code" in vars(member)):
                found.append(member)
    return found


def test_every_error_code_is_a_reason_of_the_vocabulary() -> None:
    classes = _error_classes()
    assert len(classes) > 15  # (the walk found the domains' errors)
    for error in classes:
        assert isinstance(vars(error)["code"], Reason), error
    assert all(isinstance(code, Reason) for code in HTTP_CODES.values())


def test_every_refusal_of_the_http_layer_is_a_reason() -> None:
    assert {refusal.value for refusal in Refusal} <= {reason.value for reason in Reason}


def test_target_types_and_reasons_are_short_enough_to_store() -> None:
    columns = EventRow.__table__.columns
    for vocabulary, column in ((TargetType, "target_type"), (Reason, "reason"),
                               (Action, "action")):
        assert max(len(member.value) for member in vocabulary) <= columns[column].type.length
