"""deletion.retention and deletion.holds, on the injected clock: buyer PII is erased 30 days
after delivery (after shipment when no delivery date is known) and not a second earlier, a
later update of the order moves that, orders go 18 months after purchase, canaries never,
a legal hold outlives both until it ends or is released; a dry run changes nothing."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel
from sellervault.clock import ManualClock
from sellervault.deletion import execution, holds, requests, retention
from sellervault.deletion.errors import (
    DeletionScopeNotFoundError,
    DeletionStateError,
    InvalidDeletionRequestError,
)
from sellervault.records import erasure
from sellervault.records import service as records
from sellervault.records.errors import OrderErasedError, OrderNotFoundError
from sellervault.records.models import Order
from sellervault.records.spapi import map_order, validate_order
from sellervault.records.synthetic import synthetic_order
from sellervault.runtime import Runtime
from tests.deletion.helpers import OFFICER, events, officer

DAY = timedelta(days=1)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _order(index: int, purchased: datetime, shipped: datetime | None = None,
           delivered: datetime | None = None) -> dict[str, Any]:
    order = synthetic_order(index)
    order.update(PurchaseDate=_iso(purchased), LastUpdateDate=_iso(purchased))
    order.pop("LatestShipDate", None)
    order.pop("EarliestShipDate", None)
    if shipped is not None:
        order["LatestShipDate"] = _iso(shipped)
    if delivered is not None:
        order["LatestDeliveryDate"] = _iso(delivered)
    return order


def _start(clock: ManualClock) -> datetime:
    """Now, on a whole second (the orders' dates are written to the second)."""
    clock.set(clock.now().replace(microsecond=0) + timedelta(seconds=1))
    return clock.now()


def _ingest(runtime: Runtime, *orders: dict[str, Any]) -> None:
    records.ingest(runtime, Auditor(runtime.audit, Actor(Channel.API, actor_id="acc_ingest")),
                   "acme", [map_order(validate_order(order)) for order in orders])


def _reveal(runtime: Runtime, order_id: str) -> dict[str, Any]:
    revealed: dict[str, Any] = runtime.store.call(records.reveal, runtime, officer(runtime),
                                                  "acme", order_id, "fulfillment")
    return revealed


def _state(runtime: Runtime, index: int) -> str:
    """present (PII readable), erased (order kept, PII gone) or gone."""
    order_id = synthetic_order(index)["AmazonOrderId"]
    try:
        _reveal(runtime, order_id)
    except OrderErasedError:
        masked = runtime.store.call(records.read_masked, runtime, officer(runtime), "acme",
                                    order_id)
        assert masked["AmazonOrderId"] == order_id  # the order data stays
        return "erased"
    except OrderNotFoundError:
        return "gone"
    return "present"


def test_pii_goes_30_days_after_delivery_or_shipment_and_not_a_second_earlier(
        runtime: Runtime, clock: ManualClock) -> None:
    now = _start(clock)
    _ingest(runtime, _order(1, now, shipped=now + DAY, delivered=now + 5 * DAY),
            _order(2, now, shipped=now + 10 * DAY))
    clock.set(now + 35 * DAY - timedelta(seconds=1))
    assert retention.run(runtime).pii_removed == 0
    assert [_state(runtime, i) for i in (1, 2)] == ["present", "present"]
    clock.advance(1)  # 30 days after order 1's delivery
    assert retention.run(runtime).pii_removed == 1
    assert [_state(runtime, i) for i in (1, 2)] == ["erased", "present"]
    clock.set(now + 40 * DAY)  # 30 days after order 2's shipment (no delivery date)
    assert retention.run(runtime).pii_removed == 1
    assert _state(runtime, 2) == "erased"
    with runtime.store.transaction() as session:
        erased = session.scalars(select(Order).where(Order.is_canary.is_(False))).all()
        assert {(o.buyer_ct, o.address_ct, o.email_bidx, o.phone_bidx) for o in erased} == {
            (None, None, None, None)}
        assert runtime.keyring.data_keys_held(session, "acme",
                                              [o.data_key_id for o in erased]) == 0
    assert [e.count for e in events(runtime, "retention:")] == [1, 1]


def test_a_later_update_moves_the_pii_expiry(runtime: Runtime, clock: ManualClock) -> None:
    now = _start(clock)
    _ingest(runtime, _order(3, now, shipped=now + DAY))
    _ingest(runtime, _order(3, now, shipped=now + DAY, delivered=now + 20 * DAY))  # re-sent
    clock.set(now + 40 * DAY)
    assert retention.run(runtime).pii_removed == 0  # 30 days after the new delivery date
    clock.set(now + 50 * DAY)
    assert retention.run(runtime).pii_removed == 1


def test_an_order_re_sent_after_its_pii_went_updates_its_order_data_only(
        runtime: Runtime, clock: ManualClock) -> None:
    """A marketplace re-sync of an order past its PII retention: its status and dates are
    taken, its PII is dropped (never stored again), and the rest of the batch is stored."""
    now = _start(clock)
    _ingest(runtime, _order(4, now, shipped=now + DAY, delivered=now + 2 * DAY))
    clock.set(now + 40 * DAY)
    assert retention.run(runtime).pii_removed == 1
    resent = _order(4, now, shipped=now + DAY, delivered=now + 2 * DAY)
    resent.update(OrderStatus="Canceled", LastUpdateDate=_iso(now + 39 * DAY))
    _ingest(runtime, resent, _order(5, now + 39 * DAY, shipped=now + 40 * DAY))
    assert _state(runtime, 4) == "erased" and _state(runtime, 5) == "present"
    masked = runtime.store.call(records.read_masked, runtime, officer(runtime), "acme",
                                resent["AmazonOrderId"])
    assert (masked["OrderStatus"], masked["LastUpdateDate"]) == (
        "Canceled", _iso(now + 39 * DAY))
    with runtime.store.transaction() as session:
        row = session.scalars(select(Order).where(
            Order.amazon_order_id == resent["AmazonOrderId"])).one()
        assert (row.buyer_ct, row.address_ct, row.email_bidx, row.pii_removed_at) == (
            None, None, None, now + 40 * DAY)
        assert runtime.keyring.data_keys_held(session, "acme", [row.data_key_id]) == 0


def test_an_order_without_dates_keeps_its_pii_and_is_counted(runtime: Runtime,
                                                             clock: ManualClock) -> None:
    _ingest(runtime, _order(4, _start(clock)))
    clock.advance(400 * DAY)
    report = retention.run(runtime)
    assert (report.pii_removed, report.without_pii_expiry) == (0, 1)
    assert _state(runtime, 4) == "present"


def test_orders_go_18_months_after_purchase_canaries_never(runtime: Runtime,
                                                           clock: ManualClock) -> None:
    purchased = datetime.fromisoformat("2026-08-31T10:00:00+00:00")
    clock.set(max(clock.now(), purchased))
    _ingest(runtime, _order(5, purchased, shipped=purchased + DAY))
    clock.set(datetime.fromisoformat("2028-02-29T09:59:59+00:00"))  # 18 months: Feb's last
    assert retention.run(runtime).orders_removed == 0
    clock.advance(1)
    assert retention.run(runtime).orders_removed == 1
    assert _state(runtime, 5) == "gone"
    with runtime.store.transaction() as session:
        assert len(session.scalars(select(Order).where(Order.is_canary.is_(True))).all()) == \
            runtime.settings.canaries_per_tenant


def test_a_deleted_orders_tombstone_lasts_as_long_as_the_order_would_have(
        runtime: Runtime, clock: ManualClock) -> None:
    """Withheld from a re-sync until its 18 months are up; then the tombstone goes (an order
    sent after that is past its own expiry: the next run removes it)."""
    purchased = datetime.fromisoformat("2026-08-31T10:00:00+00:00")
    clock.set(max(clock.now(), purchased))
    order = _order(6, purchased, shipped=purchased + DAY)
    _ingest(runtime, order)
    filed = requests.file_request(runtime, officer(runtime), OFFICER, scope="order",
                                  tenant_id="acme", requested_by="DSR",
                                  amazon_order_id=order["AmazonOrderId"])
    execution.execute(runtime, officer(runtime), OFFICER, filed.id)
    clock.set(datetime.fromisoformat("2028-02-29T09:59:59+00:00"))
    assert retention.run(runtime).tombstones_removed == 0
    _ingest(runtime, order)
    assert _state(runtime, 6) == "gone"  # (withheld)
    clock.advance(1)
    assert retention.run(runtime, dry_run=True).tombstones_removed == 1  # (says, keeps)
    assert retention.run(runtime).tombstones_removed == 1
    assert [e.count for e in events(runtime, "retention:forget-tombstones")] == [1]
    _ingest(runtime, order)  # the marketplace no longer sends it; if it does, it is past
    assert retention.run(runtime).orders_removed == 1  # its own expiry: the next run
    assert _state(runtime, 6) == "gone"  # removes it


def test_a_legal_hold_outlives_both_until_it_ends(runtime: Runtime,
                                                  clock: ManualClock) -> None:
    now = _start(clock)
    _ingest(runtime, _order(6, now, shipped=now + DAY), _order(7, now, shipped=now + DAY))
    hold = holds.place(runtime, officer(runtime), OFFICER, "acme",
                       synthetic_order(6)["AmazonOrderId"], "litigation 2026-17",
                       now + 800 * DAY)
    clock.set(now + 600 * DAY)  # past the PII's 30 days and the order's 18 months
    report = retention.run(runtime)
    assert (report.orders_removed, report.held) == (1, 1)
    assert [_state(runtime, i) for i in (6, 7)] == ["present", "gone"]
    clock.set(now + 800 * DAY)  # the hold ends
    assert retention.run(runtime).orders_removed == 1
    assert _state(runtime, 6) == "gone"
    assert [e.action for e in events(runtime, "holds:")] == ["holds:place"]
    assert [h.id for h in holds.list_holds(runtime, officer(runtime))] == [hold.id]


def test_a_released_hold_lets_retention_go_on(runtime: Runtime, clock: ManualClock) -> None:
    now = _start(clock)
    order_id = synthetic_order(8)["AmazonOrderId"]
    _ingest(runtime, _order(8, now, shipped=now + DAY))
    first = holds.place(runtime, officer(runtime), OFFICER, "acme", order_id, "audit",
                        now + 90 * DAY)
    later = holds.place(runtime, officer(runtime), OFFICER, "acme", order_id, "tax",
                        now + 60 * DAY)
    holds.release(runtime, officer(runtime), OFFICER, first.id)  # the later-ending one
    clock.set(now + 45 * DAY)
    assert retention.run(runtime).pii_removed == 0  # "tax" still holds it
    holds.release(runtime, officer(runtime), OFFICER, later.id)
    assert retention.run(runtime).pii_removed == 1
    with pytest.raises(DeletionStateError):
        holds.release(runtime, officer(runtime), OFFICER, later.id)


@pytest.mark.parametrize(("order_id", "reason", "days", "error"), [
    ("902-9999999-9999999", "audit", 30, DeletionScopeNotFoundError),
    (None, " ", 30, InvalidDeletionRequestError),
    (None, "two\nlines", 30, InvalidDeletionRequestError),
    (None, "audit", -1, InvalidDeletionRequestError),
    (None, "audit", 3654, InvalidDeletionRequestError),
])
def test_a_bad_hold_is_refused_and_records_nothing(
        runtime: Runtime, clock: ManualClock, order_id: str | None, reason: str, days: int,
        error: type[Exception]) -> None:
    _ingest(runtime, _order(9, _start(clock)))
    with pytest.raises(error):
        holds.place(runtime, officer(runtime), OFFICER, "acme",
                    order_id or synthetic_order(9)["AmazonOrderId"], reason,
                    clock.now() + days * DAY)
    assert holds.list_holds(runtime, officer(runtime)) == []
    with runtime.store.transaction() as session:
        assert session.scalar(select(Order.held_until).where(
            Order.amazon_order_id == synthetic_order(9)["AmazonOrderId"])) is None


def test_two_holds_placed_at_once_keep_the_later_end(runtime: Runtime,
                                                     clock: ManualClock) -> None:
    """Each reads the order's holds and writes the latest end: without the order's row
    locked first, the shorter could overwrite the longer (READ COMMITTED lets both read)."""
    now = _start(clock)
    for round_ in range(5):
        index = 20 + round_
        order_id = synthetic_order(index)["AmazonOrderId"]
        _ingest(runtime, _order(index, now))
        barrier = threading.Barrier(2)

        def place(days: int, b: threading.Barrier = barrier, o: str = order_id) -> None:
            b.wait()
            holds.place(runtime, officer(runtime), OFFICER, "acme", o, "race", now + days * DAY)

        threads = [threading.Thread(target=place, args=(days,)) for days in (900, 100)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        with runtime.store.transaction() as session:
            assert session.scalar(select(Order.held_until).where(
                Order.amazon_order_id == order_id)) == now + 900 * DAY, round_


def test_a_dry_run_says_what_would_go_and_changes_nothing(runtime: Runtime,
                                                          clock: ManualClock) -> None:
    now = _start(clock)
    _ingest(runtime, _order(10, now, shipped=now), _order(11, now, shipped=now))
    clock.set(now + 600 * DAY)
    report = retention.run(runtime, dry_run=True)
    assert (report.pii_removed, report.orders_removed, report.dry_run) == (2, 2, True)
    assert [_state(runtime, i) for i in (10, 11)] == ["present", "present"]
    assert events(runtime, "retention:") == []


@pytest.mark.parametrize("kind", ["pii", "orders"])
def test_a_hold_committed_between_the_find_and_the_write_keeps_its_order(
        runtime: Runtime, clock: ManualClock, monkeypatch: pytest.MonkeyPatch,
        kind: str) -> None:
    """READ COMMITTED: the run found the order unheld, then another officer's hold commits
    (201, ``holds:place``) before the run's write: the write asks again, and the order keeps
    its PII, its row and its key."""
    if runtime.store.dialect != "postgresql":
        pytest.skip("READ COMMITTED race: PostgreSQL (SQLite's writers take turns)")
    now = _start(clock)
    _ingest(runtime, _order(12, now, shipped=now + DAY))
    order_id = synthetic_order(12)["AmazonOrderId"]
    clock.set(now + (40 if kind == "pii" else 600) * DAY)
    name = "pii_expired" if kind == "pii" else "orders_expired"
    find = getattr(erasure, name)
    placed: list[holds.Hold] = []

    def find_then_hold(session: Any, when: datetime, limit: int) -> list[erasure.OrderRef]:
        found: list[erasure.OrderRef] = find(session, when, limit)
        if found and not placed:  # (the hold's own transaction commits here)
            placed.append(holds.place(runtime, officer(runtime), OFFICER, "acme", order_id,
                                      "litigation", when + 800 * DAY))
        return found

    monkeypatch.setattr(erasure, name, find_then_hold)
    report = retention.run(runtime)
    assert placed and (report.pii_removed, report.orders_removed) == (0, 0)
    assert _state(runtime, 12) == "present"
    with runtime.store.transaction() as session:
        row = session.scalars(select(Order).where(Order.amazon_order_id == order_id)).one()
        assert row.held_until == placed[0].held_until and row.pii_removed_at is None
        assert runtime.keyring.data_keys_held(session, "acme", [row.data_key_id]) == 1
    assert events(runtime, "retention:") == []
