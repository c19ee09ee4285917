"""deletion.execution: a request executed step by step (keys destroyed, rows deleted,
verified, certified), each step one transaction and one event, resumable after a stop at
any step and done once by two executions at once. After it, nothing of the scope answers
or decrypts, and everything else still does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey
from sqlalchemy import func, select

from sellervault.access import killswitches
from sellervault.access.roles import Grant, Principal, Role
from sellervault.config import Settings
from sellervault.crypto.errors import TenantKeysDestroyedError
from sellervault.deletion import execution, requests, returns
from sellervault.deletion.errors import DeletionStateError
from sellervault.records import erasure
from sellervault.records import service as records
from sellervault.records.errors import OrderErasedError, OrderNotFoundError
from sellervault.records.models import ErasedOrder, Order
from sellervault.records.spapi import map_order, validate_order
from sellervault.runtime import Runtime
from tests.crypto.test_keyring import fresh_runtime
from tests.deletion.helpers import (
    BUYER_EMAIL,
    OFFICER,
    approve_return,
    events,
    ingest,
    officer,
)

STEP_EVENTS = ["deletions:execute", "deletions:destroy-keys", "deletions:delete-rows",
               "deletions:verify", "deletions:complete"]
RETURN_STEP_EVENTS = [STEP_EVENTS[0], "deletions:return", *STEP_EVENTS[1:]]


def _file(runtime: Runtime, **fields: Any) -> requests.Request:
    return requests.file_request(runtime, officer(runtime), OFFICER, tenant_id="acme",
                                 requested_by="Amazon DSR ticket 4711", **fields)


def _execute(runtime: Runtime, request_id: str, until: str | None = None) -> requests.Request:
    return execution.execute(runtime, officer(runtime), OFFICER, request_id, until=until)


def _reveal(runtime: Runtime, tenant: str, order_id: str) -> dict[str, Any]:
    revealed: dict[str, Any] = runtime.store.call(records.reveal, runtime, officer(runtime),
                                                  tenant, order_id, "fulfillment")
    return revealed


def ingest_result(runtime: Runtime, tenant: str,
                  orders: list[dict[str, Any]]) -> records.IngestResult:
    return records.ingest(runtime, officer(runtime), tenant,
                          [map_order(validate_order(order)) for order in orders])


def _rows(runtime: Runtime, tenant: str) -> list[Order]:
    with runtime.store.transaction() as session:
        return list(session.scalars(select(Order).where(Order.tenant_id == tenant)))


def test_an_order_is_erased_and_nothing_else(runtime: Runtime) -> None:
    orders = ingest(runtime, "acme", 3)
    ingest(runtime, "globex", 1, start=50)
    gone, kept = orders[0]["AmazonOrderId"], orders[1]["AmazonOrderId"]
    done = _execute(runtime, _file(runtime, scope="order", amazon_order_id=gone).id)
    assert (done.status, done.step, done.orders, done.data_keys, done.tenant_keys) == (
        "completed", execution.CERTIFIED, 1, 1, 0)
    assert done.certificate_id is not None and done.completed_at is not None
    with pytest.raises(OrderNotFoundError):  # 404, as if it never existed
        _reveal(runtime, "acme", gone)
    assert _reveal(runtime, "acme", kept)["BuyerInfo"]["BuyerEmail"] == \
        orders[1]["BuyerInfo"]["BuyerEmail"]
    assert _reveal(runtime, "globex", "902-0000000-0000050")["AmazonOrderId"]
    assert [e.action for e in events(runtime)[1:]] == STEP_EVENTS
    assert [e.count for e in events(runtime)[1:]] == [None, 1, 1, None, 1]


def test_a_buyers_orders_are_found_by_the_blind_index_and_erased(runtime: Runtime) -> None:
    theirs = ingest(runtime, "acme", 3, buyer_email=BUYER_EMAIL)
    others = ingest(runtime, "acme", 2, start=10)
    ingest(runtime, "globex", 1, start=20, buyer_email=BUYER_EMAIL)  # another tenant's buyer
    filed = _file(runtime, scope="buyer", buyer_email=BUYER_EMAIL)
    done = _execute(runtime, filed.id)
    assert (done.orders, done.data_keys) == (3, 3)
    left = {row.amazon_order_id for row in _rows(runtime, "acme") if not row.is_canary}
    assert left == {order["AmazonOrderId"] for order in others}
    for order in theirs:
        with pytest.raises(OrderNotFoundError):
            _reveal(runtime, "acme", order["AmazonOrderId"])
    assert _reveal(runtime, "globex", "902-0000000-0000020")["BuyerInfo"]["BuyerEmail"] == \
        BUYER_EMAIL
    assert {e.buyer for e in events(runtime)} == {filed.buyer}


def test_a_tenant_is_erased_with_its_keys_and_canaries(runtime: Runtime) -> None:
    ingest(runtime, "acme", 4)
    ingest(runtime, "globex", 2, start=50)
    _reveal(runtime, "acme", "902-0000000-0000000")  # (its keys cached in this process)
    filed = _file(runtime, scope="tenant")
    stopped = _execute(runtime, filed.id, until=execution.KEYS_DESTROYED)
    with pytest.raises(OrderErasedError):  # unreadable at once, its rows still there
        _reveal(runtime, "acme", "902-0000000-0000000")
    # The destroying transaction counted nothing (a million rows would keep the tenant
    # readable for seconds): its orders and data keys are counted as its rows go.
    assert (stopped.orders, stopped.data_keys) == (None, None)
    done = _execute(runtime, filed.id)
    canaries = runtime.settings.canaries_per_tenant
    assert (done.orders, done.data_keys) == (4 + canaries, 4 + canaries)
    assert done.tenant_keys is not None and done.tenant_keys >= 2  # key-encryption and index
    assert _rows(runtime, "acme") == []
    assert len(_rows(runtime, "globex")) == 2 + canaries
    with pytest.raises(TenantKeysDestroyedError):  # and it stays erased
        ingest(runtime, "acme", 1, start=90)
    assert _reveal(runtime, "globex", "902-0000000-0000050")["AmazonOrderId"]


def test_a_tenant_is_unreadable_at_once_in_every_process_not_only_the_erasing_one(
        runtime: Runtime) -> None:
    """Another server process used the tenant (its key-encryption key unwrapped there):
    once the erasure's keys are destroyed, it opens none of the data keys still stored,
    an order it read before nor one it never read, long before their rows are deleted."""
    orders = ingest(runtime, "acme", 3)
    other_server = fresh_runtime(runtime)
    _reveal(other_server, "acme", orders[0]["AmazonOrderId"])
    assert other_server.keyring.has_kek("acme", 1)
    filed = _file(runtime, scope="tenant")
    _execute(runtime, filed.id, until=execution.KEYS_DESTROYED)
    assert len(_rows(runtime, "acme")) >= 3  # (the rows are still there)
    for order in orders[:2]:
        with pytest.raises(OrderErasedError):
            _reveal(other_server, "acme", order["AmazonOrderId"])


@pytest.mark.parametrize("stop", [execution.KEYS_DESTROYED, execution.ROWS_DELETED,
                                  execution.VERIFIED])
def test_a_stopped_execution_resumes_and_records_each_step_once(
        runtime: Runtime, stop: str) -> None:
    orders = ingest(runtime, "acme", 3, buyer_email=BUYER_EMAIL)
    filed = _file(runtime, scope="buyer", buyer_email=BUYER_EMAIL)
    stopped = _execute(runtime, filed.id, until=stop)
    assert (stopped.status, stopped.step) == ("executing", stop)
    if stop == execution.KEYS_DESTROYED:  # the rows are there, and unreadable already
        with pytest.raises(OrderErasedError):
            _reveal(runtime, "acme", orders[0]["AmazonOrderId"])
    done = _execute(runtime, filed.id)
    assert done.step == execution.CERTIFIED and done.orders == 3
    assert _execute(runtime, filed.id) == done  # once more: nothing to do
    assert [e.action for e in events(runtime)[1:]] == STEP_EVENTS


def test_an_order_ingested_after_the_keys_went_is_erased_too(runtime: Runtime) -> None:
    ingest(runtime, "acme", 2, buyer_email=BUYER_EMAIL)
    filed = _file(runtime, scope="buyer", buyer_email=BUYER_EMAIL)
    _execute(runtime, filed.id, until=execution.KEYS_DESTROYED)
    ingest(runtime, "acme", 1, start=30, buyer_email=BUYER_EMAIL)  # meanwhile
    with runtime.store.transaction() as session:
        late_key = session.scalar(select(Order.data_key_id).where(
            Order.amazon_order_id == "902-0000000-0000030"))
    _execute(runtime, filed.id)
    with runtime.store.transaction() as session:
        assert runtime.keyring.data_keys_held(session, "acme", [late_key]) == 0
    with pytest.raises(OrderNotFoundError):
        _reveal(runtime, "acme", "902-0000000-0000030")


def test_two_executions_at_once_do_each_step_once(runtime: Runtime) -> None:
    for round_ in range(5):
        ingest(runtime, "acme", 2, start=100 * round_)
        order = f"902-0000000-{100 * round_:07d}"
        filed = _file(runtime, scope="order", amazon_order_id=order)
        before = len(events(runtime))
        errors = _execute_at_once(runtime, filed.id, 2)
        assert errors == []
        mine = [e for e in events(runtime)[before:] if e.target_id == filed.id]
        assert [e.action for e in mine] == STEP_EVENTS, round_
        assert requests.get_request(runtime, officer(runtime), filed.id).orders == 1


def _execute_at_once(runtime: Runtime, request_id: str, count: int) -> list[BaseException]:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            _execute(runtime, request_id)
        except BaseException as exc:  # pragma: no cover - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_no_byte_of_an_erased_order_is_left_in_the_sqlite_files(runtime: Runtime) -> None:
    if runtime.store.dialect != "sqlite":
        pytest.skip("SQLite's files; PostgreSQL keeps old row versions until VACUUM "
                    "(docs/operations.md: the destroyed key is what makes them unreadable)")
    orders = ingest(runtime, "acme", 3)
    gone = orders[0]["AmazonOrderId"]
    [row] = [r for r in _rows(runtime, "acme") if r.amazon_order_id == gone]
    secrets = [row.buyer_ct[-24:], row.address_ct[-24:], row.email_bidx]  # (tails: random)
    done = _execute(runtime, _file(runtime, scope="order", amazon_order_id=gone).id)
    assert done.step == execution.CERTIFIED
    data = Path(runtime.settings.data_dir)
    written = b"".join(path.read_bytes() for path in data.glob("sellervault.db*"))
    for secret in secrets:  # (the order id itself stays: the register names it)
        assert secret is not None and secret not in written


def test_an_execution_killed_at_any_commit_finishes_when_run_again(
        runtime: Runtime, settings: Settings) -> None:
    """A real process, SIGKILLed just before its 1st, 2nd, ... commit (that transaction
    lost, every one before it kept: a crash anywhere between two commits looks the same),
    then the execution run again here: every time the scope is gone, the rest intact, each
    step recorded exactly once, and the data returned first, each order once. (A request
    that returns data goes through every step; one that does not skips the first.)"""
    ingest(runtime, "acme", 30, buyer_email=BUYER_EMAIL)
    others = ingest(runtime, "acme", 2, start=500)
    recipient = ECKey.generate_key("P-256", private=True)
    environment = {**os.environ, "SELLERVAULT_DATA_DIR": str(settings.data_dir)}
    if settings.database_url is not None:
        environment["SELLERVAULT_DATABASE_URL"] = settings.database_url.get_secret_value()
    killed_at = 0
    for at in range(1, 40):
        theirs = {r.amazon_order_id for r in _rows(runtime, "acme") if not r.is_canary} - {
            o["AmazonOrderId"] for o in others}
        filed = _file(runtime, scope="buyer", buyer_email=BUYER_EMAIL, return_data=True,
                      return_to=recipient.as_dict(private=False))
        approve_return(runtime, filed.id)
        child = subprocess.run(
            [sys.executable, "-m", "tests.deletion.killed_execution", filed.id, str(at)],
            env=environment, capture_output=True, text=True, timeout=120,
            cwd=Path(__file__).resolve().parents[2])
        assert child.returncode in (0, -signal.SIGKILL), child.stderr
        done = _execute(runtime, filed.id)
        assert (done.status, done.step) == ("completed", execution.CERTIFIED), at
        assert done.certificate_id is not None  # one: the request id is unique there
        mine = [e.action for e in events(runtime) if e.target_id == filed.id]
        assert mine == ["deletions:create", "deletions:approve-return",
                        *RETURN_STEP_EVENTS], (at, mine)
        returned = returns.open_file(b"".join(requests.returned_file(
            runtime, officer(runtime), filed.id).chunks), recipient.as_dict(private=True))
        assert sorted(o["AmazonOrderId"] for o in returned) == sorted(theirs), at
        assert {r.amazon_order_id for r in _rows(runtime, "acme") if not r.is_canary} == {
            o["AmazonOrderId"] for o in others}
        if child.returncode == 0:
            break  # it finished before this commit: every point has been tried
        killed_at = at
        ingest(runtime, "acme", 3, start=100 + 10 * at, buyer_email=BUYER_EMAIL)  # again
    assert killed_at >= 9  # (begin, return, destroy, the batches, each step's move: all)


def test_an_order_arriving_before_verification_fails_it_and_a_rerun_erases_it(
        runtime: Runtime) -> None:
    ingest(runtime, "acme", 2, buyer_email=BUYER_EMAIL)
    filed = _file(runtime, scope="buyer", buyer_email=BUYER_EMAIL)
    _execute(runtime, filed.id, until=execution.ROWS_DELETED)
    ingest(runtime, "acme", 1, start=40, buyer_email=BUYER_EMAIL)  # between two steps
    with pytest.raises(DeletionStateError, match="rows_absent"):
        _execute(runtime, filed.id)
    assert [(e.action, e.outcome) for e in events(runtime, "deletions:verify")] == [
        ("deletions:verify", "failed")]
    done = _execute(runtime, filed.id)  # run again: deletes it, verifies, certifies
    assert done.status == "completed"
    with pytest.raises(OrderNotFoundError):
        _reveal(runtime, "acme", "902-0000000-0000040")


def test_a_large_scope_is_unreadable_at_once_and_finished_in_the_background(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the foreground limit, ``start`` destroys the keys and leaves the rows to the
    ``deletion-executions`` job, whose progress the request counts."""
    monkeypatch.setattr(execution, "FOREGROUND_LIMIT", 2)
    theirs = ingest(runtime, "acme", 5, buyer_email=BUYER_EMAIL)
    filed = _file(runtime, scope="buyer", buyer_email=BUYER_EMAIL)
    begun = execution.start(runtime, officer(runtime), OFFICER, filed.id)
    assert (begun.status, begun.step, begun.orders, begun.rows_deleted) == (
        "executing", execution.KEYS_DESTROYED, 5, None)
    with pytest.raises(OrderErasedError):  # unreadable now, its rows still there
        _reveal(runtime, "acme", theirs[0]["AmazonOrderId"])
    assert execution.resume_all(runtime) == 1
    done = requests.get_request(runtime, officer(runtime), filed.id)
    assert (done.status, done.rows_deleted, done.certificate_id is not None) == (
        "completed", 5, True)
    with pytest.raises(OrderNotFoundError):
        _reveal(runtime, "acme", theirs[0]["AmazonOrderId"])
    assert execution.resume_all(runtime) == 0  # nothing left to run
    assert [e.action for e in events(runtime) if e.target_id == filed.id
            and e.action != "deletions:list"] == ["deletions:create", *STEP_EVENTS]


def test_a_large_scope_to_return_is_left_whole_to_the_background(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is destroyed before the return is written: ``start`` only begins it."""
    monkeypatch.setattr(execution, "FOREGROUND_LIMIT", 2)
    theirs = ingest(runtime, "acme", 3, buyer_email=BUYER_EMAIL)
    recipient = ECKey.generate_key("P-256", private=True)
    filed = _file(runtime, scope="buyer", buyer_email=BUYER_EMAIL, return_data=True,
                  return_to=recipient.as_dict(private=False))
    approve_return(runtime, filed.id)
    begun = execution.start(runtime, officer(runtime), OFFICER, filed.id)
    assert (begun.status, begun.step) == ("executing", None)
    assert _reveal(runtime, "acme", theirs[0]["AmazonOrderId"])  # still readable
    assert execution.resume_all(runtime) == 1
    returned = returns.open_file(b"".join(requests.returned_file(
        runtime, officer(runtime), filed.id).chunks), recipient.as_dict(private=True))
    assert len(returned) == 3


def test_an_order_deleted_on_request_stays_deleted_when_a_resync_sends_it_again(
        runtime: Runtime) -> None:
    """A marketplace re-sync re-sends the buyer's orders: withheld, not stored anew; the
    buyer's next order (a new marketplace id) is stored as any other."""
    theirs = ingest(runtime, "acme", 2, buyer_email=BUYER_EMAIL)
    filed = _file(runtime, scope="buyer", buyer_email=BUYER_EMAIL)
    assert _execute(runtime, filed.id).status == "completed"
    resent = ingest_result(runtime, "acme", theirs)
    assert (resent.inserted, resent.updated, resent.withheld) == (0, 0, 2)
    for order in theirs:
        with pytest.raises(OrderNotFoundError):
            _reveal(runtime, "acme", order["AmazonOrderId"])
    later = ingest(runtime, "acme", 1, start=70, buyer_email=BUYER_EMAIL)
    assert _reveal(runtime, "acme", later[0]["AmazonOrderId"])["BuyerInfo"]["BuyerEmail"] == \
        BUYER_EMAIL
    assert ingest_result(runtime, "globex", theirs).inserted == 2  # another tenant's own
    assert [e.count for e in events(runtime, "orders:withhold")] == [2]
    tenant = _file(runtime, scope="tenant")  # the tenant erased: its tombstones go too
    assert _execute(runtime, tenant.id).status == "completed"
    with runtime.store.transaction() as session:
        assert session.scalars(select(ErasedOrder.tenant_id)).all() == []


def test_a_buyers_deletion_finishes_while_its_tenant_is_being_erased(
        runtime: Runtime) -> None:
    """The tenant's index key gone with its other keys, the buyer's rows are deleted
    without tombstones (an erased tenant takes no ingest to withhold anything from)."""
    ingest(runtime, "acme", 2, buyer_email=BUYER_EMAIL)
    buyer = _file(runtime, scope="buyer", buyer_email=BUYER_EMAIL)
    _execute(runtime, buyer.id, until=execution.KEYS_DESTROYED)
    tenant = _file(runtime, scope="tenant")
    _execute(runtime, tenant.id, until=execution.KEYS_DESTROYED)
    assert _execute(runtime, buyer.id).status == "completed"
    assert _execute(runtime, tenant.id).status == "completed"
    with runtime.store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(ErasedOrder)) == 0


def test_a_scope_larger_than_a_batch_is_deleted_a_batch_at_a_time(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch walks on from where the one before ended; the progress counts every row
    once and the other tenant is untouched."""
    monkeypatch.setattr(erasure, "DELETE_BATCH", 2)
    ingest(runtime, "acme", 5)
    ingest(runtime, "globex", 3, start=50)
    filed = _file(runtime, scope="tenant")
    done = _execute(runtime, filed.id)
    canaries = runtime.settings.canaries_per_tenant
    assert (done.status, done.orders, done.rows_deleted) == (
        "completed", 5 + canaries, 5 + canaries)
    assert _rows(runtime, "acme") == []
    assert len(_rows(runtime, "globex")) == 3 + canaries


def test_a_small_scope_is_executed_within_the_call(runtime: Runtime) -> None:
    ingest(runtime, "acme", 2, buyer_email=BUYER_EMAIL)
    filed = _file(runtime, scope="buyer", buyer_email=BUYER_EMAIL)
    done = execution.start(runtime, officer(runtime), OFFICER, filed.id)
    assert (done.status, done.rows_deleted) == ("completed", 2)


def test_the_job_leaves_a_frozen_tenants_request_until_its_switch_is_cleared(
        runtime: Runtime) -> None:
    """A tenant's kill switch stops everything on it, the deletion job's erasure too (it may
    be the evidence of what the switch was pulled for); the deadline alerts go on."""
    orders = ingest(runtime, "acme", 1)
    filed = _file(runtime, scope="order", amazon_order_id=orders[0]["AmazonOrderId"])
    _execute(runtime, filed.id, until=execution.KEYS_DESTROYED)
    operator = Principal("acc_" + "7" * 24, "person", (Grant(Role.OPERATOR, "*"),))
    killswitches.set_switch(runtime, officer(runtime), operator, killswitches.Scope.TENANT,
                            "acme")
    assert execution.resume_all(runtime) == 0
    assert requests.get_request(runtime, officer(runtime), filed.id).status == "executing"
    killswitches.clear_switch(runtime, officer(runtime), killswitches.Scope.TENANT, "acme")
    assert execution.resume_all(runtime) == 1
