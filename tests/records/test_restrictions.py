"""records.restrictions: a buyer's processing restricted (a data subject's right): from the
restriction's commit every masked read, reveal and search hit of their orders in the tenant
is refused (451 ``processing_restricted``), their orders ingested later too, while the data
is kept and other buyers and tenants go on; lifted, everything reads again. One active
restriction per buyer (two at once on PostgreSQL: one wins), and the email is never kept
or logged. Each restriction placed and lifted is written to the erasure ledger first, as
the table holds it (a restore must not undo it: tests/store/test_backups.py)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from sqlalchemy import select

from sellervault.audit.models import EventRow
from sellervault.clock import ManualClock
from sellervault.deletion import execution, ledger, requests
from sellervault.deletion.models import ErasureApplied
from sellervault.records import restrictions
from sellervault.records import service as records
from sellervault.records.errors import (
    OrderNotFoundError,
    OrderRestrictedError,
    RestrictionError,
    RestrictionNotFoundError,
    RestrictionStateError,
)
from sellervault.records.models import Restriction
from sellervault.records.spapi import map_order, validate_order
from sellervault.records.synthetic import synthetic_orders
from sellervault.runtime import Runtime
from tests.deletion.helpers import BUYER_EMAIL, OFFICER, ingest, officer


def _restrict(runtime: Runtime, tenant: str = "acme",
              email: str = BUYER_EMAIL) -> restrictions.Restricted:
    return restrictions.restrict(runtime, officer(runtime), OFFICER, tenant, email,
                                 "DSR 5120: accuracy contested")


def _reveal(runtime: Runtime, order_id: str, tenant: str = "acme") -> dict[str, Any]:
    revealed: dict[str, Any] = runtime.store.call(records.reveal, runtime, officer(runtime),
                                                  tenant, order_id, "fulfillment")
    return revealed


def _read(runtime: Runtime, order_id: str) -> dict[str, Any]:
    read: dict[str, Any] = runtime.store.call(records.read_masked, runtime, officer(runtime),
                                              "acme", order_id)
    return read


def _search(runtime: Runtime, **criteria: str) -> records.SearchResult:
    return records.search(runtime, officer(runtime), OFFICER, "acme", purpose="fulfillment",
                          **criteria)


def test_a_restricted_buyers_orders_are_refused_everywhere_and_kept(runtime: Runtime) -> None:
    theirs = ingest(runtime, "acme", 2, buyer_email=BUYER_EMAIL)
    others = ingest(runtime, "acme", 2, start=10)
    ingest(runtime, "globex", 1, start=20, buyer_email=BUYER_EMAIL)  # another tenant's buyer
    placed = _restrict(runtime)
    assert placed.buyer.startswith("byr_") and placed.lifted_at is None
    for order in theirs:
        with pytest.raises(OrderRestrictedError):
            _reveal(runtime, order["AmazonOrderId"])
        with pytest.raises(OrderRestrictedError):
            _read(runtime, order["AmazonOrderId"])
    assert _search(runtime, buyer_email=BUYER_EMAIL) == records.SearchResult([], 2)
    assert _reveal(runtime, others[0]["AmazonOrderId"])["AmazonOrderId"]  # others go on
    assert _reveal(runtime, "902-0000000-0000020", "globex")["BuyerInfo"]["BuyerEmail"] == \
        BUYER_EMAIL
    later = ingest(runtime, "acme", 1, start=30, buyer_email=BUYER_EMAIL)  # stored, refused
    with pytest.raises(OrderRestrictedError):
        _reveal(runtime, later[0]["AmazonOrderId"])
    with pytest.raises(OrderNotFoundError):  # (an order that does not exist is still 404)
        _reveal(runtime, "902-9999999-9999999")
    lifted = restrictions.lift(runtime, officer(runtime), OFFICER, placed.id)
    assert lifted.lifted_by == OFFICER and lifted.lifted_at is not None
    assert _reveal(runtime, theirs[0]["AmazonOrderId"])["BuyerInfo"]["BuyerEmail"] == \
        BUYER_EMAIL
    assert len(_search(runtime, buyer_email=BUYER_EMAIL).orders) == 3


def test_a_search_shows_the_other_buyers_hits_and_counts_the_withheld(
        runtime: Runtime) -> None:
    theirs = ingest(runtime, "acme", 1, buyer_email=BUYER_EMAIL)
    postal = theirs[0]["ShippingAddress"]["PostalCode"]
    [other] = synthetic_orders(1, start=10)
    other["ShippingAddress"]["PostalCode"] = postal  # a neighbour
    records.ingest(runtime, officer(runtime), "acme", [map_order(validate_order(other))])
    _restrict(runtime)
    found = _search(runtime, postal_code=postal)
    assert found.restricted == 1
    shown = {o["AmazonOrderId"] for o in found.orders}
    assert other["AmazonOrderId"] in shown and theirs[0]["AmazonOrderId"] not in shown


def test_a_buyer_is_restricted_once_and_lifted_once(runtime: Runtime,
                                                    clock: ManualClock) -> None:
    ingest(runtime, "acme", 1, buyer_email=BUYER_EMAIL)
    placed = _restrict(runtime)
    with pytest.raises(RestrictionStateError):
        _restrict(runtime, email=BUYER_EMAIL.upper())  # (the same email, normalised)
    restrictions.lift(runtime, officer(runtime), OFFICER, placed.id)
    with pytest.raises(RestrictionStateError):
        restrictions.lift(runtime, officer(runtime), OFFICER, placed.id)
    with pytest.raises(RestrictionNotFoundError):
        restrictions.lift(runtime, officer(runtime), OFFICER, "rst_" + "0" * 24)
    clock.advance(60)
    again = _restrict(runtime)  # restricted again after the lift: a new record
    listed = restrictions.list_restrictions(runtime, officer(runtime), "acme")
    assert [r.id for r in listed] == [again.id, placed.id]
    assert [r.id for r in restrictions.list_restrictions(runtime, officer(runtime), "acme",
                                                         active_only=True)] == [again.id]


def test_two_officers_restricting_one_buyer_at_once_make_one_restriction(
        runtime: Runtime) -> None:
    ingest(runtime, "acme", 1, buyer_email=BUYER_EMAIL)
    for round_ in range(4):
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def run(b: threading.Barrier = barrier, out: list[str] = outcomes) -> None:
            b.wait()
            try:
                _restrict(runtime)
                out.append("placed")
            except RestrictionStateError:
                out.append("409")

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(outcomes) == ["409", "placed"], round_
        [active] = restrictions.list_restrictions(runtime, officer(runtime), active_only=True)
        restrictions.lift(runtime, officer(runtime), OFFICER, active.id)


@pytest.mark.parametrize(("tenant", "email", "reason", "error"), [
    ("acme", "not-an-email", "DSR", RestrictionError),
    ("acme", BUYER_EMAIL, "  ", RestrictionError),
    ("acme", BUYER_EMAIL, "two\nlines", RestrictionError),
    ("nobody", BUYER_EMAIL, "DSR", RestrictionNotFoundError),  # a tenant with no data
])
def test_a_bad_restriction_is_refused_and_records_nothing(
        runtime: Runtime, tenant: str, email: str, reason: str,
        error: type[Exception]) -> None:
    ingest(runtime, "acme", 1)
    with pytest.raises(error) as refused:
        restrictions.restrict(runtime, officer(runtime), OFFICER, tenant, email, reason)
    assert BUYER_EMAIL not in str(refused.value)
    assert restrictions.list_restrictions(runtime, officer(runtime)) == []


def test_the_email_is_neither_kept_nor_logged(runtime: Runtime) -> None:
    ingest(runtime, "acme", 1, buyer_email=BUYER_EMAIL)
    placed = _restrict(runtime)
    with runtime.store.transaction() as session:
        row = session.get(Restriction, placed.id)
        assert row is not None
        kept = " ".join(str(getattr(row, c.key)) for c in Restriction.__table__.columns)
        logged = " ".join(" ".join(str(v) for v in e) for e in session.execute(
            select(EventRow.__table__).where(EventRow.action.startswith("restrictions:"))))
    assert BUYER_EMAIL not in kept and BUYER_EMAIL not in logged
    assert placed.buyer in logged


def test_a_restriction_and_its_lift_are_written_ahead_as_the_table_holds_them(
        runtime: Runtime) -> None:
    """The digest and pseudonym, never the email; a refused restriction writes nothing."""
    ingest(runtime, "acme", 1, buyer_email=BUYER_EMAIL)
    placed = _restrict(runtime)
    with pytest.raises(RestrictionStateError):
        _restrict(runtime)
    restrictions.lift(runtime, officer(runtime), OFFICER, placed.id)
    written = ledger.path_of(runtime.settings).read_text()
    entries = [json.loads(line) for line in written.splitlines()]
    with runtime.store.transaction() as session:
        row = session.get(Restriction, placed.id)
        assert row is not None
        applied = set(session.scalars(select(ErasureApplied.id)))
        assert [(e["kind"], e["row"]) for e in entries] == [
            ("restriction-placed", {
                "id": placed.id, "tenant_id": "acme", "buyer_digest": row.buyer_digest.hex(),
                "buyer": placed.buyer, "reason": "DSR 5120: accuracy contested",
                "restricted_by": OFFICER, "created_at": placed.created_at.isoformat()}),
            ("restriction-lifted", {"id": placed.id, "lifted_by": OFFICER,
                                    "lifted_at": row.lifted_at and row.lifted_at.isoformat()})]
    assert applied == {e["id"] for e in entries}
    assert BUYER_EMAIL not in written.lower() and "@" not in written
    assert ledger.reapply(runtime) == 0


def test_a_restricted_buyer_can_still_be_deleted(runtime: Runtime) -> None:
    theirs = ingest(runtime, "acme", 2, buyer_email=BUYER_EMAIL)
    _restrict(runtime)
    filed = requests.file_request(runtime, officer(runtime), OFFICER, scope="buyer",
                                  tenant_id="acme", requested_by="DSR",
                                  buyer_email=BUYER_EMAIL)
    done = execution.execute(runtime, officer(runtime), OFFICER, filed.id)
    assert (done.status, done.orders) == ("completed", 2)
    with pytest.raises(OrderNotFoundError):
        _reveal(runtime, theirs[0]["AmazonOrderId"])


def test_a_restricted_canary_still_goes_off(runtime: Runtime) -> None:
    """Restricting a canary's made-up email does not silence it: the touch is recorded
    before the 451."""
    ingest(runtime, "acme", 1, buyer_email=BUYER_EMAIL)
    [canary, *_] = records.list_canaries(runtime, officer(runtime), "acme")
    email = _reveal(runtime, canary)["BuyerInfo"]["BuyerEmail"]
    _restrict(runtime, email=email)
    before = len(_touched(runtime))
    with pytest.raises(OrderRestrictedError):
        _read(runtime, canary)
    assert len(_touched(runtime)) == before + 1


def _touched(runtime: Runtime) -> list[Any]:
    with runtime.store.engine.connect() as connection:
        return list(connection.execute(select(EventRow.seq).where(
            EventRow.action == "canaries:touched")))
