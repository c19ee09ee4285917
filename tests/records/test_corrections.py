"""records.corrections: one PII field of an order set anew: revealed afterwards with the new
value, sealed under the same data key, found by its new blind index (and no longer by the
old), shown masked; the value is never logged. Two corrections of one order at once both
hold (the row is locked; on PostgreSQL without it one would overwrite the other). A field
outside the list, a bad value, a missing order and an erased one are refused and change
nothing."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select

from sellervault.audit.models import EventRow
from sellervault.records import corrections, erasure
from sellervault.records import service as records
from sellervault.records.errors import CorrectionError, OrderErasedError, OrderNotFoundError
from sellervault.records.models import Order
from sellervault.runtime import Runtime
from tests.deletion.helpers import BUYER_EMAIL, OFFICER, ingest, officer

NEW_EMAIL = "corrected.address@marketplace.example.test"
ORDER = "902-0000000-0000000"


def _correct(runtime: Runtime, field: str, value: str,
             order: str = ORDER) -> corrections.Corrected:
    return corrections.correct(runtime, officer(runtime), "acme", order, field, value)


def _reveal(runtime: Runtime, order: str = ORDER) -> dict[str, Any]:
    revealed: dict[str, Any] = runtime.store.call(records.reveal, runtime, officer(runtime),
                                                  "acme", order, "fulfillment")
    return revealed


def _search(runtime: Runtime, **criteria: str) -> list[str]:
    found = records.search(runtime, officer(runtime), OFFICER, "acme", purpose="fulfillment",
                           **criteria)
    return [order["AmazonOrderId"] for order in found.orders]


def _order(runtime: Runtime, order: str = ORDER) -> Order:
    with runtime.store.transaction() as session:
        row = session.scalars(select(Order).where(Order.amazon_order_id == order)).one()
        session.expunge(row)
        return row


def test_an_address_line_is_corrected_under_the_same_key(runtime: Runtime) -> None:
    ingest(runtime, "acme", 2)
    before = _order(runtime)
    done = _correct(runtime, "ShippingAddress.AddressLine1", "Korrekte Strasse 7")
    assert (done.field, done.amazon_order_id) == ("ShippingAddress.AddressLine1", ORDER)
    after = _order(runtime)
    assert after.data_key_id == before.data_key_id and after.address_ct != before.address_ct
    assert after.buyer_ct == before.buyer_ct  # the other record untouched
    revealed = _reveal(runtime)
    assert revealed["ShippingAddress"]["AddressLine1"] == "Korrekte Strasse 7"
    masked = runtime.store.call(records.read_masked, runtime, officer(runtime), "acme", ORDER)
    assert masked["ShippingAddress"]["AddressLine1"] == "***"
    assert _reveal(runtime, "902-0000000-0000001")["ShippingAddress"]["AddressLine1"] != \
        "Korrekte Strasse 7"


def test_a_corrected_email_moves_the_blind_index_and_the_pseudonym(runtime: Runtime) -> None:
    ingest(runtime, "acme", 1, buyer_email=BUYER_EMAIL)
    done = _correct(runtime, "BuyerInfo.BuyerEmail", NEW_EMAIL)
    assert _search(runtime, buyer_email=NEW_EMAIL) == [ORDER]
    assert _search(runtime, buyer_email=BUYER_EMAIL) == []
    assert _reveal(runtime)["BuyerInfo"]["BuyerEmail"] == NEW_EMAIL
    with runtime.store.engine.connect() as connection:
        [event] = connection.execute(select(EventRow).where(
            EventRow.action == "orders:correct")).all()
        logged = " ".join(str(v) for v in event)
    assert (event.criteria, event.buyer) == ("BuyerInfo.BuyerEmail", done.buyer)
    assert NEW_EMAIL not in logged and BUYER_EMAIL not in logged


def test_a_postal_code_and_a_phone_are_found_by_their_new_values(runtime: Runtime) -> None:
    ingest(runtime, "acme", 1)
    _correct(runtime, "ShippingAddress.PostalCode", "zz9 9zz")
    _correct(runtime, "ShippingAddress.Phone", "+49 (0)30 1234-5678")
    assert _search(runtime, postal_code="ZZ99ZZ") == [ORDER]
    assert _search(runtime, buyer_phone="4903012345678") == [ORDER]


def test_two_corrections_of_one_order_at_once_both_hold(runtime: Runtime) -> None:
    ingest(runtime, "acme", 1)
    for round_ in range(4):
        barrier = threading.Barrier(2)
        values = {"ShippingAddress.City": f"Stadt {round_}",
                  "ShippingAddress.AddressLine2": f"Hinterhaus {round_}"}

        def run(field: str, value: str, b: threading.Barrier = barrier) -> None:
            b.wait()
            _correct(runtime, field, value)

        threads = [threading.Thread(target=run, args=item) for item in values.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        address = _reveal(runtime)["ShippingAddress"]
        assert (address["City"], address["AddressLine2"]) == tuple(values.values()), round_


@pytest.mark.parametrize(("field", "value", "message"), [
    ("BuyerInfo.BuyerTaxInfo", "DE123", "not a correctable field"),
    ("AmazonOrderId", "902-1", "not a correctable field"),
    ("ShippingAddress.City", "   ", "one line of text"),
    ("ShippingAddress.City", "two\nlines", "one line of text"),
    ("ShippingAddress.City", "x" * 501, "one line of text"),
    ("BuyerInfo.BuyerEmail", "not-an-email", "not an email address"),
    ("ShippingAddress.Phone", "(call me)", "nothing of it would be found"),
])
def test_a_bad_correction_is_refused_and_changes_nothing(
        runtime: Runtime, field: str, value: str, message: str) -> None:
    ingest(runtime, "acme", 1)
    before = _order(runtime)
    with pytest.raises(CorrectionError, match=message) as refused:
        _correct(runtime, field, value)
    assert value.strip() not in str(refused.value) or not value.strip()
    after = _order(runtime)
    assert (after.buyer_ct, after.address_ct, after.attributes) == (
        before.buyer_ct, before.address_ct, before.attributes)


def test_a_missing_or_erased_order_is_refused(runtime: Runtime) -> None:
    ingest(runtime, "acme", 2)
    with pytest.raises(OrderNotFoundError):
        _correct(runtime, "ShippingAddress.City", "Berlin", order="902-9999999-9999999")
    row = _order(runtime)
    with runtime.store.transaction() as session:  # what retention does 30 days after delivery
        erasure.remove_pii(session, [row.id], runtime.clock.now())
        runtime.keyring.destroy_data_keys(session, "acme", [row.data_key_id])
    with pytest.raises(OrderErasedError):
        _correct(runtime, "ShippingAddress.City", "Berlin")
    other = _order(runtime, "902-0000000-0000001")
    with runtime.store.transaction() as session:  # a key destroyed, the records still there
        runtime.keyring.destroy_data_keys(session, "acme", [other.data_key_id])
    with pytest.raises(OrderErasedError):
        _correct(runtime, "ShippingAddress.City", "Berlin", order="902-0000000-0000001")


def test_an_order_held_a_canary_or_a_restricted_buyers_email_is_not_corrected(
        runtime: Runtime) -> None:
    """409: a legal hold keeps the value as evidence; a canary stays as planted (and the
    correction asked of it is a touch: its event, the corrector locked); a new email would
    take the order out of its buyer's restriction (lift it first)."""
    from datetime import timedelta

    from sellervault.deletion import holds
    from sellervault.records import restrictions
    from sellervault.records.errors import CorrectionStateError

    ingest(runtime, "acme", 2, buyer_email=BUYER_EMAIL)
    holds.place(runtime, officer(runtime), OFFICER, "acme", ORDER, "case 9",
                runtime.clock.now() + timedelta(days=30))
    with pytest.raises(CorrectionStateError, match="legal hold"):
        _correct(runtime, "ShippingAddress.City", "Bonn")
    [canary] = records.list_canaries(runtime, officer(runtime), "acme")[:1]
    with pytest.raises(CorrectionStateError, match="may not be corrected"):
        _correct(runtime, "ShippingAddress.City", "Bonn", order=canary)
    with runtime.store.engine.connect() as connection:  # the probe tripped the canary
        touched = connection.execute(select(EventRow.target_id, EventRow.actor_id).where(
            EventRow.action == "canaries:touched")).all()
    assert [(t.target_id, t.actor_id) for t in touched] == [(_order(runtime, canary).id,
                                                              OFFICER)]
    restricted = restrictions.restrict(runtime, officer(runtime), OFFICER, "acme",
                                       BUYER_EMAIL, "accuracy contested")
    other = "902-0000000-0000001"
    with pytest.raises(CorrectionStateError, match="restricted"):
        _correct(runtime, "BuyerInfo.BuyerEmail", NEW_EMAIL, order=other)
    _correct(runtime, "ShippingAddress.City", "Bonn", order=other)  # (other fields: yes)
    restrictions.lift(runtime, officer(runtime), OFFICER, restricted.id)
    _correct(runtime, "BuyerInfo.BuyerEmail", NEW_EMAIL, order=other)
