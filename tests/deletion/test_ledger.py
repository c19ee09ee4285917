"""deletion.ledger: every erasure is written to the file beside the root key, with an id,
before its transaction commits, and the transaction records the id; entries whose id the
database lacks (a database restored from an older backup, or a transaction that rolled back
after writing ahead) are applied at the next start, once: PII removed, keys destroyed, rows
deleted, a tenant erased. A database with ids the file lacks (the file missing, an older
copy) does not start. (Backups themselves: tests/store/test_backups.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import delete, select

from sellervault.deletion import execution, ledger, requests
from sellervault.deletion.errors import ErasureLedgerError
from sellervault.deletion.models import ErasureApplied
from sellervault.records import lifetimes
from sellervault.records import service as records
from sellervault.records.errors import OrderErasedError, OrderNotFoundError
from sellervault.records.models import ErasedOrder, Order
from sellervault.records.spapi import map_order, validate_order
from sellervault.runtime import Runtime
from tests.deletion.helpers import OFFICER, events, ingest, officer


def _applied(runtime: Runtime) -> set[str]:
    with runtime.store.transaction() as session:
        return set(session.scalars(select(ErasureApplied.id)))


def _reveal(runtime: Runtime, order_id: str, tenant: str = "acme") -> dict[str, Any]:
    revealed: dict[str, Any] = runtime.store.call(records.reveal, runtime, officer(runtime),
                                                  tenant, order_id, "fulfillment")
    return revealed


def _order(runtime: Runtime, order_id: str) -> Order:
    with runtime.store.transaction() as session:
        row = session.scalars(select(Order).where(Order.amazon_order_id == order_id)).one()
        session.expunge(row)
        return row


def test_a_deletion_is_written_ahead_and_the_position_follows(runtime: Runtime) -> None:
    orders = ingest(runtime, "acme", 2)
    filed = requests.file_request(runtime, officer(runtime), OFFICER, scope="order",
                                  tenant_id="acme", requested_by="DSR",
                                  amazon_order_id=orders[0]["AmazonOrderId"])
    row = _order(runtime, orders[0]["AmazonOrderId"])
    execution.execute(runtime, officer(runtime), OFFICER, filed.id)
    path = ledger.path_of(runtime.settings)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    filing, completion = [entry for entry in lines if "kind" in entry]  # (obligations)
    assert filing["row"]["amazon_order_id"] == orders[0]["AmazonOrderId"]  # (the register's)
    assert (completion["kind"], completion["row"]["status"]) == ("request-state", "completed")
    entries = [entry for entry in lines if "kind" not in entry]
    assert {k: v for k, v in entries[0].items() if k != "id"} == {
        "tenant": "acme", "tenant_keys": False, "data_keys": [row.data_key_id],
        "orders": [], "pii_of": [], "tombstones": []}
    assert entries[1]["orders"] == [row.id]
    assert len(entries[1]["tombstones"]) == 1  # (a digest, not the marketplace id)
    assert orders[0]["AmazonOrderId"] not in json.dumps(entries)
    assert _applied(runtime) == {entry["id"] for entry in lines}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert ledger.reapply(runtime) == 0  # in step: nothing to do


def test_entries_past_the_position_are_applied_once(runtime: Runtime) -> None:
    """Written ahead by transactions that then rolled back: the database never had them."""
    orders = ingest(runtime, "acme", 3)
    ingest(runtime, "globex", 1, start=20)
    first, second, third = (_order(runtime, o["AmazonOrderId"]) for o in orders)

    class RolledBack(Exception):
        pass

    with pytest.raises(RolledBack), runtime.store.transaction() as session:
        for entry in (ledger.Erasure("acme", data_keys=[first.data_key_id],
                                     pii_of=[first.id]),
                      ledger.Erasure("acme", data_keys=[second.data_key_id],
                                     orders=[second.id]),
                      ledger.Erasure("globex", tenant_keys=True)):
            ledger.record(runtime.settings, session, entry)
        raise RolledBack()
    assert _reveal(runtime, orders[0]["AmazonOrderId"])  # (nothing happened yet)
    assert ledger.reapply(runtime) == 3
    with pytest.raises(OrderErasedError):  # its PII removed, the order kept
        _reveal(runtime, orders[0]["AmazonOrderId"])
    assert _order(runtime, orders[0]["AmazonOrderId"]).buyer_ct is None
    with pytest.raises(OrderNotFoundError):
        _reveal(runtime, orders[1]["AmazonOrderId"])
    with pytest.raises(OrderNotFoundError):
        _reveal(runtime, "902-0000000-0000020", "globex")
    assert _reveal(runtime, third.amazon_order_id)["AmazonOrderId"] == third.amazon_order_id
    assert ledger.reapply(runtime) == 0
    assert [e.count for e in events(runtime, "erasures:")] == [3]


def test_a_restored_database_gets_its_tombstones_back(runtime: Runtime) -> None:
    """An order deleted after the backup is deleted again at the start, and a re-sync that
    sends it afterwards is withheld, as it would have been without the restore."""
    orders = ingest(runtime, "acme", 2)
    filed = requests.file_request(runtime, officer(runtime), OFFICER, scope="order",
                                  tenant_id="acme", requested_by="DSR",
                                  amazon_order_id=orders[0]["AmazonOrderId"])
    execution.execute(runtime, officer(runtime), OFFICER, filed.id)
    with runtime.store.transaction() as session:  # (as a backup from before would hold it)
        session.execute(delete(ErasedOrder))
        session.execute(delete(ErasureApplied))
    assert ledger.reapply(runtime) == 4  # (and its filing and completion, which find the
    # request there as they left it)
    resent = records.ingest(runtime, officer(runtime), "acme", [
        map_order(validate_order(orders[0]))])
    assert (resent.inserted, resent.withheld) == (0, 1)
    with pytest.raises(OrderNotFoundError):
        _reveal(runtime, orders[0]["AmazonOrderId"])


@pytest.mark.parametrize(("damage", "lacking"), [("missing", 8), ("older", 4)])
def test_a_database_with_erasures_the_file_lacks_does_not_start(
        runtime: Runtime, damage: str, lacking: int) -> None:
    """Fail closed: keys/ restored from an older copy (or the ledger lost) would let what was
    erased since come back, unnoticed."""
    orders = ingest(runtime, "acme", 2)
    path = ledger.path_of(runtime.settings)
    for order in orders:
        filed = requests.file_request(runtime, officer(runtime), OFFICER, scope="order",
                                      tenant_id="acme", requested_by="DSR",
                                      amazon_order_id=order["AmazonOrderId"])
        execution.execute(runtime, officer(runtime), OFFICER, filed.id)
        if order is orders[0]:
            older = path.read_bytes()
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(older)
    with pytest.raises(ErasureLedgerError, match=f"lacks {lacking} entries"):
        ledger.reapply(runtime)


def test_an_entry_of_the_earlier_format_is_applied_with_a_conservative_expiry(
        runtime: Runtime) -> None:
    """Tombstones written as bare digests (before their expiry was kept) are given the
    longest life their order can have had left: 18 months from when they are applied."""
    ingest(runtime, "acme", 1)
    path = ledger.path_of(runtime.settings)
    with path.open("a") as file:
        file.write(json.dumps({"id": "e" * 32, "tenant": "acme", "tenant_keys": False,
                               "data_keys": [], "orders": [], "pii_of": [],
                               "tombstones": ["ab" * 32]}) + "\n")
    assert ledger.reapply(runtime) == 1
    with runtime.store.transaction() as session:
        [expires_at] = session.scalars(select(ErasedOrder.expires_at)).all()
    assert expires_at == lifetimes.order_expiry(runtime.clock.now())


@pytest.mark.parametrize("damaged", [
    '{"id": "x", "tenant": "acme", "tombstones": [["zz", "2027-01-01T00:00:00+00:00"]]}',
    '{"id": "x", "tenant": "acme", "tombstones": [["ab", "2027-01-01T00:00:00"]]}',
    '{"id": "x", "tenant": "acme", "orders": [1, 2]}',
    '{"id": "x", "tenant": "acme", "unknown": true}',
    '{"tenant": "acme"}',
    'not json',
    '{"id": "x", "kind": "unknown", "row": {}}',
    '{"id": "x", "kind": "restriction-lifted", "row": {"id": "rst_1"}}',
    '{"id": "x", "kind": "restriction-lifted", "row": {"id": "rst_1", "lifted_by": "acc_1", '
    '"lifted_at": "2027-01-01T00:00:00"}}',
    '{"id": "x", "kind": "request-state", "row": {"id": "del_1", "status": "forgotten"}}'])
def test_a_damaged_entry_stops_the_start_naming_its_line(runtime: Runtime,
                                                        damaged: str) -> None:
    ingest(runtime, "acme", 1)
    path = ledger.path_of(runtime.settings)
    with path.open("a") as file:
        file.write(damaged + "\n")
    with pytest.raises(ErasureLedgerError, match=r"line \d+: not a ledger entry"):
        ledger.reapply(runtime)
