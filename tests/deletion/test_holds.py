"""deletion.holds against deletion requests: a legal hold prevails (GDPR Art. 17(3)(e)). A
request whose scope holds a held order is refused when filed (409 ``legal_hold``, only the
refusal's event written) and, for a hold placed after filing, when executed, before any key
is destroyed (the request pending again, so it can be cancelled); a hold on an order whose
keys a deletion destroyed is refused (410). On PostgreSQL a hold and an execution at the
same moment never leave an active hold on an erased order."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from sellervault.clock import ManualClock
from sellervault.deletion import execution, holds, requests
from sellervault.deletion.errors import (
    DeletionScopeNotFoundError,
    HeldOrderErasedError,
    LegalHoldError,
)
from sellervault.deletion.models import DeletionRequest
from sellervault.records import service as records
from sellervault.records.errors import OrderErasedError, OrderNotFoundError
from sellervault.records.models import Order
from sellervault.runtime import Runtime
from tests.deletion.helpers import BUYER_EMAIL, OFFICER, events, ingest, officer

DAY = timedelta(days=1)


def _hold(runtime: Runtime, order_id: str, days: int = 400) -> holds.Hold:
    return holds.place(runtime, officer(runtime), OFFICER, "acme", order_id, "case 2026-17",
                       runtime.clock.now() + days * DAY)


def _file(runtime: Runtime, scope: str, order_id: str | None = None) -> requests.Request:
    return requests.file_request(
        runtime, officer(runtime), OFFICER, scope=scope, tenant_id="acme",  # type: ignore[arg-type]
        requested_by="DSR 4711", amazon_order_id=order_id if scope == "order" else None,
        buyer_email=BUYER_EMAIL if scope == "buyer" else None)


def _state(runtime: Runtime, order_id: str) -> str:
    """present (PII readable), erased (its key gone) or gone."""
    try:
        runtime.store.call(records.reveal, runtime, officer(runtime), "acme", order_id,
                           "fulfillment")
    except OrderErasedError:
        return "erased"
    except OrderNotFoundError:
        return "gone"
    return "present"


def _registered(runtime: Runtime) -> list[Any]:
    with runtime.store.transaction() as session:
        return list(session.scalars(select(DeletionRequest.id)))


@pytest.mark.parametrize("scope", ["order", "buyer", "tenant"])
def test_a_request_for_a_held_order_is_refused_and_files_nothing(
        runtime: Runtime, scope: str) -> None:
    orders = ingest(runtime, "acme", 2, buyer_email=BUYER_EMAIL)
    held = orders[1]["AmazonOrderId"]
    hold = _hold(runtime, held)
    with pytest.raises(LegalHoldError, match=hold.id) as refused:
        _file(runtime, scope, held)
    assert (refused.value.status, refused.value.code) == (409, "legal_hold")
    assert BUYER_EMAIL not in str(refused.value)
    assert _registered(runtime) == []
    [event] = events(runtime, "deletions:create")
    assert (event.outcome, event.reason, event.tenant_id, event.criteria) == (
        "denied", "legal_hold", "acme", scope)
    assert _state(runtime, held) == "present"
    if scope == "order":  # (the tenant's other order is not held)
        assert _file(runtime, "order", orders[0]["AmazonOrderId"]).status == "pending"


@pytest.mark.parametrize("scope", ["order", "buyer", "tenant"])
def test_a_hold_placed_after_filing_stops_the_execution_before_any_key_goes(
        runtime: Runtime, scope: str) -> None:
    orders = ingest(runtime, "acme", 2, buyer_email=BUYER_EMAIL)
    held = orders[0]["AmazonOrderId"]
    filed = _file(runtime, scope, held)
    hold = _hold(runtime, held)
    with pytest.raises(LegalHoldError, match=hold.id):
        execution.execute(runtime, officer(runtime), OFFICER, filed.id)
    with pytest.raises(LegalHoldError):  # the background's way in too
        execution.start(runtime, officer(runtime), OFFICER, filed.id)
    after = requests.get_request(runtime, officer(runtime), filed.id)
    assert (after.status, after.step, after.certificate_id, after.data_keys) == (
        "pending", None, None, None)
    assert [_state(runtime, o["AmazonOrderId"]) for o in orders] == ["present", "present"]
    refusals = [e for e in events(runtime, "deletions:destroy-keys")]
    assert {(e.outcome, e.reason, e.target_id) for e in refusals} == {
        ("denied", "legal_hold", filed.id)}
    assert requests.cancel_request(runtime, officer(runtime), OFFICER,
                                   filed.id).status == "cancelled"


def test_once_every_hold_is_released_or_ended_the_request_is_executed(
        runtime: Runtime, clock: ManualClock) -> None:
    orders = ingest(runtime, "acme", 1)
    held = orders[0]["AmazonOrderId"]
    filed = _file(runtime, "order", held)
    longer, shorter = _hold(runtime, held), _hold(runtime, held, days=2)
    with pytest.raises(LegalHoldError) as refused:
        execution.execute(runtime, officer(runtime), OFFICER, filed.id)
    assert sorted(refused.value.hold_ids) == sorted([longer.id, shorter.id])
    holds.release(runtime, officer(runtime), OFFICER, longer.id)
    with pytest.raises(LegalHoldError, match=shorter.id):  # (the other one still holds)
        execution.execute(runtime, officer(runtime), OFFICER, filed.id)
    clock.set(shorter.held_until)
    done = execution.execute(runtime, officer(runtime), OFFICER, filed.id)
    assert done.status == "completed" and _state(runtime, held) == "gone"


@pytest.mark.parametrize("scope", ["order", "tenant"])
def test_an_order_whose_keys_a_deletion_destroyed_cannot_be_held(runtime: Runtime,
                                                                 scope: str) -> None:
    orders = ingest(runtime, "acme", 2)
    order_id = orders[0]["AmazonOrderId"]
    filed = _file(runtime, scope, order_id)
    execution.execute(runtime, officer(runtime), OFFICER, filed.id,
                      until=execution.KEYS_DESTROYED)
    with pytest.raises(HeldOrderErasedError) as refused:
        _hold(runtime, order_id)
    assert (refused.value.status, refused.value.code) == (410, "erased")
    assert holds.list_holds(runtime, officer(runtime)) == []
    with runtime.store.transaction() as session:
        assert session.scalar(select(Order.held_until).where(
            Order.amazon_order_id == order_id)) is None
    assert execution.execute(runtime, officer(runtime), OFFICER,
                             filed.id).status == "completed"


def _late_order_held(runtime: Runtime) -> tuple[requests.Request, dict[str, Any],
                                                 holds.Hold]:
    """A buyer's request past step 1 (keys destroyed), then an order of the buyer ingested
    and put under a hold: the request, the order, the hold."""
    ingest(runtime, "acme", 1, buyer_email=BUYER_EMAIL)
    filed = _file(runtime, "buyer")
    execution.execute(runtime, officer(runtime), OFFICER, filed.id,
                      until=execution.KEYS_DESTROYED)
    [late] = ingest(runtime, "acme", 1, start=50, buyer_email=BUYER_EMAIL)
    return filed, late, _hold(runtime, late["AmazonOrderId"])


def test_a_buyers_order_held_after_the_keys_went_stops_the_row_deletion(
        runtime: Runtime) -> None:
    """An order of the buyer ingested after step 1 (erased by step 2 otherwise) and put
    under a hold meanwhile: the hold prevails; the request waits where it stands."""
    filed, late, hold = _late_order_held(runtime)
    with pytest.raises(LegalHoldError, match=hold.id):
        execution.execute(runtime, officer(runtime), OFFICER, filed.id)
    after = requests.get_request(runtime, officer(runtime), filed.id)
    assert (after.status, after.step, after.certificate_id) == (
        "executing", execution.KEYS_DESTROYED, None)
    assert _state(runtime, late["AmazonOrderId"]) == "present"
    [refusal] = events(runtime, "deletions:delete-rows")
    assert (refusal.outcome, refusal.reason) == ("denied", "legal_hold")


def test_the_job_leaves_a_request_a_hold_stops_until_the_hold_goes(
        runtime: Runtime, clock: ManualClock) -> None:
    """The deletion-executions job runs every 30 s: it used to run the held request again
    each time, a refusal event and an error line a run. It leaves it be (its refusal is on
    record, its deadline alerts go on), and finishes it once the hold is released."""
    filed, _, hold = _late_order_held(runtime)
    with pytest.raises(LegalHoldError):
        execution.execute(runtime, officer(runtime), OFFICER, filed.id)
    for _ in range(3):
        clock.advance(30)
        assert execution.resume_all(runtime) == 0
    assert len(events(runtime, "deletions:delete-rows")) == 1  # the first refusal only
    holds.release(runtime, officer(runtime), OFFICER, hold.id)
    assert execution.resume_all(runtime) == 1
    assert requests.get_request(runtime, officer(runtime), filed.id).status == "completed"


@pytest.mark.parametrize("scope", ["order", "tenant"])
def test_a_hold_and_an_execution_at_once_never_leave_a_hold_on_an_erased_order(
        runtime: Runtime, scope: str) -> None:
    """READ COMMITTED lets both read "no hold" and "the order is there": each must wait
    for the other's lock, so that after both either the hold stands on an intact order and
    the execution was refused, or the hold was refused and the order is erased."""
    if runtime.store.dialect != "postgresql":
        pytest.skip("READ COMMITTED race: PostgreSQL (SQLite's writers take turns)")
    outcomes = set()
    for round_ in range(6):
        tenant_orders = ingest(runtime, "acme", 2, start=10 * round_)
        order_id = tenant_orders[0]["AmazonOrderId"]
        filed = _file(runtime, scope, order_id)
        barrier = threading.Barrier(2)
        results: dict[str, BaseException | None] = {}

        def run(name: str, work: Any, b: threading.Barrier = barrier,
                r: dict[str, BaseException | None] = results) -> None:
            b.wait()
            try:
                work()
                r[name] = None
            except BaseException as exc:  # reported below
                r[name] = exc

        threads = [
            threading.Thread(target=run, args=("hold", lambda o=order_id: _hold(runtime, o))),
            threading.Thread(target=run, args=("execute", lambda f=filed.id: execution.execute(
                runtime, officer(runtime), OFFICER, f)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        active = [h for h in holds.list_holds(runtime, officer(runtime))
                  if h.amazon_order_id == order_id and h.released_at is None]
        state = _state(runtime, order_id)
        if active:
            assert state == "present", round_
            assert isinstance(results["execute"], LegalHoldError), results
            outcomes.add("held")
            holds.release(runtime, officer(runtime), OFFICER, active[0].id)
        else:
            assert isinstance(results["hold"], HeldOrderErasedError
                              | DeletionScopeNotFoundError), results
            assert results["execute"] is None and state == "gone", results
            outcomes.add("erased")
        if scope == "tenant":  # (an erased tenant takes no more orders: a fresh one)
            if state == "gone":
                break
            requests.cancel_request(runtime, officer(runtime), OFFICER, filed.id)
    assert outcomes  # (which one wins is the scheduler's choice)
