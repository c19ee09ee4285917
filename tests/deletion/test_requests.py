"""deletion.requests: the register. A request is filed with its 72-hour clock (or the
configured hours) from receipt, for an order or tenant the service holds or for any buyer;
the email is never kept or logged; only a pending request can be cancelled, once."""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from sellervault.clock import ManualClock
from sellervault.deletion import execution, requests
from sellervault.deletion.errors import (
    DeletionRequestNotFoundError,
    DeletionScopeNotFoundError,
    DeletionStateError,
    InvalidDeletionRequestError,
)
from sellervault.runtime import Runtime
from tests.deletion.helpers import BUYER_EMAIL, OFFICER, events, ingest, officer


def _file(runtime: Runtime, **fields: object) -> requests.Request:
    fields.setdefault("requested_by", "Amazon DSR ticket 4711")
    fields.setdefault("tenant_id", "acme")
    return requests.file_request(runtime, officer(runtime), OFFICER, **fields)  # type: ignore[arg-type]


def test_an_order_request_is_due_72_hours_after_receipt(runtime: Runtime,
                                                        clock: ManualClock) -> None:
    orders = ingest(runtime, "acme", 2)
    received = clock.now() - timedelta(hours=5)
    filed = _file(runtime, scope="order", amazon_order_id=orders[0]["AmazonOrderId"],
                  received_at=received)
    assert (filed.status, filed.scope, filed.step, filed.certificate_id) == (
        "pending", "order", None, None)
    assert filed.id.startswith("del_") and filed.deadline == received + timedelta(hours=72)
    assert requests.get_request(runtime, officer(runtime), filed.id) == filed
    [event] = events(runtime, "deletions:create")
    assert (event.target_id, event.criteria, event.tenant_id, event.actor_id) == (
        filed.id, "order", "acme", OFFICER)


def test_the_deadline_follows_the_setting_and_receipt_defaults_to_now(
        runtime: Runtime, clock: ManualClock) -> None:
    ingest(runtime, "acme", 1)
    shorter = dataclasses.replace(runtime, settings=runtime.settings.model_copy(
        update={"deletion_deadline_hours": 24}))
    filed = _file(shorter, scope="tenant")
    assert filed.received_at == clock.now()
    assert filed.deadline == clock.now() + timedelta(hours=24)


def test_a_buyer_request_keeps_neither_the_email_nor_logs_it(runtime: Runtime) -> None:
    ingest(runtime, "acme", 3, buyer_email=BUYER_EMAIL)
    filed = _file(runtime, scope="buyer", buyer_email=BUYER_EMAIL.upper())  # (normalised)
    assert filed.buyer is not None and filed.buyer.startswith("byr_")
    with runtime.store.engine.connect() as connection:
        stored = connection.execute(text("SELECT * FROM deletion_requests")).one()
        logged = connection.execute(text("SELECT * FROM security_events")).all()
    for row in (stored, *logged):
        assert "deleteme" not in repr(tuple(row)).lower()
    assert events(runtime, "deletions:create")[0].buyer == filed.buyer
    unknown = _file(runtime, scope="buyer", buyer_email="nobody.here@example.test")
    assert unknown.status == "pending"  # (never told whether someone is a buyer)


@pytest.mark.parametrize(("fields", "message"), [
    ({"scope": "order"}, "amazon_order_id: required"),
    ({"scope": "order", "amazon_order_id": "1", "buyer_email": "a@b.test"},
     "buyer_email: only for scope buyer"),
    ({"scope": "buyer"}, "buyer_email: required"),
    ({"scope": "buyer", "buyer_email": "not-an-email"}, "not an email address"),
    ({"scope": "tenant", "amazon_order_id": "1"}, "amazon_order_id: only for scope order"),
    ({"scope": "tenant", "requested_by": "  "}, "requested_by"),
    ({"scope": "tenant", "requested_by": "two\nlines"}, "requested_by"),
    ({"scope": "tenant", "return_data": True}, "public key is required"),
    ({"scope": "tenant", "received_at": datetime(2020, 1, 1)}, "time zone"),
])
def test_a_request_that_says_the_wrong_things_is_refused_and_records_nothing(
        runtime: Runtime, fields: dict[str, object], message: str) -> None:
    ingest(runtime, "acme", 1)
    with pytest.raises(InvalidDeletionRequestError, match=message):
        _file(runtime, **fields)
    assert requests.list_requests(runtime, officer(runtime)) == []
    assert events(runtime, "deletions:create") == []


def test_a_receipt_in_the_future_is_refused(runtime: Runtime, clock: ManualClock) -> None:
    ingest(runtime, "acme", 1)
    with pytest.raises(InvalidDeletionRequestError, match="future"):
        _file(runtime, scope="tenant", received_at=clock.now() + timedelta(hours=1))
    _file(runtime, scope="tenant", received_at=clock.now() + timedelta(minutes=4))  # skew


def test_an_order_or_tenant_the_service_does_not_hold_is_refused(runtime: Runtime) -> None:
    ingest(runtime, "acme", 1)
    with pytest.raises(DeletionScopeNotFoundError, match="order"):
        _file(runtime, scope="order", amazon_order_id="902-9999999-9999999")
    with pytest.raises(DeletionScopeNotFoundError, match="tenant"):
        _file(runtime, scope="tenant", tenant_id="globex")
    with pytest.raises(DeletionScopeNotFoundError, match="tenant"):
        _file(runtime, scope="buyer", tenant_id="globex", buyer_email=BUYER_EMAIL)
    assert requests.list_requests(runtime, officer(runtime)) == []


def test_the_register_lists_newest_first_and_by_status(runtime: Runtime,
                                                       clock: ManualClock) -> None:
    ingest(runtime, "acme", 1)
    first = _file(runtime, scope="tenant")
    clock.advance(60)
    second = _file(runtime, scope="buyer", buyer_email=BUYER_EMAIL)
    requests.cancel_request(runtime, officer(runtime), OFFICER, second.id)
    listed = requests.list_requests(runtime, officer(runtime))
    assert [r.id for r in listed] == [second.id, first.id]
    assert [r.id for r in requests.list_requests(runtime, officer(runtime), "pending")] == [
        first.id]
    with pytest.raises(DeletionRequestNotFoundError):
        requests.get_request(runtime, officer(runtime), "del_" + "0" * 24)


def test_only_a_pending_request_is_cancelled(runtime: Runtime) -> None:
    orders = ingest(runtime, "acme", 2)
    filed = _file(runtime, scope="order", amazon_order_id=orders[0]["AmazonOrderId"])
    cancelled = requests.cancel_request(runtime, officer(runtime), OFFICER, filed.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(DeletionStateError):
        requests.cancel_request(runtime, officer(runtime), OFFICER, filed.id)
    with pytest.raises(DeletionStateError, match="cancelled"):
        execution.execute(runtime, officer(runtime), OFFICER, filed.id)
    begun = _file(runtime, scope="order", amazon_order_id=orders[1]["AmazonOrderId"])
    execution.execute(runtime, officer(runtime), OFFICER, begun.id,
                      until=execution.KEYS_DESTROYED)
    with pytest.raises(DeletionStateError, match="begun"):
        requests.cancel_request(runtime, officer(runtime), OFFICER, begun.id)
    with pytest.raises(DeletionRequestNotFoundError):
        requests.cancel_request(runtime, officer(runtime), OFFICER, "del_" + "0" * 24)
    assert [e.target_id for e in events(runtime, "deletions:cancel")] == [filed.id]


def test_a_cancel_and_an_execute_at_once_cannot_both_win(runtime: Runtime) -> None:
    """Both read the request pending; the conditional updates let exactly one through."""
    for order in ingest(runtime, "acme", 10):
        filed = _file(runtime, scope="order", amazon_order_id=order["AmazonOrderId"])
        outcomes = _cancel_and_execute_at_once(runtime, filed.id)
        assert sorted(outcomes) in (["cancelled", "refused"], ["executed", "refused"])
        final = requests.get_request(runtime, officer(runtime), filed.id)
        assert final.status == ("cancelled" if "cancelled" in outcomes else "executing")


def _cancel_and_execute_at_once(runtime: Runtime, request_id: str) -> list[str]:
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def cancel() -> None:
        barrier.wait()
        try:
            requests.cancel_request(runtime, officer(runtime), OFFICER, request_id)
            outcomes.append("cancelled")
        except DeletionStateError:
            outcomes.append("refused")

    def run() -> None:
        barrier.wait()
        try:
            execution.execute(runtime, officer(runtime), OFFICER, request_id,
                              until=execution.KEYS_DESTROYED)
            outcomes.append("executed")
        except DeletionStateError:
            outcomes.append("refused")

    threads = [threading.Thread(target=cancel), threading.Thread(target=run)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes
