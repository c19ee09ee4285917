"""After ingest, reveal and search, no byte of PII is in clear anywhere at rest: not in the
database (SQLite file, WAL, shared memory; every PostgreSQL table), not in the security
log, not in the server's own log output, not in any file of the data directory."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from sellervault import bootstrap
from sellervault.runtime import Runtime
from sellervault.store.schema import metadata
from tests.support import Server, start_server

DISTINCT = {
    "BuyerEmail": "quillon.vexworth.7431@pii-probe.example.test",
    "BuyerName": "Quillon Vexworth",
    "CompanyLegalName": "Vexworth Zyphr Holdings",
    "PurchaseOrderNumber": "PO-ZQX-99173",
    "ShipName": "Quillon Vexworth-Ashby",
    "AddressLine1": "77 Zyxqurt Boulevard",
    "City": "Vexhampton",
    "PostalCode": "ZX97QQ",
    "Phone": "+1 555-014-7882",
}


def _needles() -> list[bytes]:
    """Every PII value in the encodings a leak could take."""
    out: list[bytes] = []
    for value in DISTINCT.values():
        for variant in {value, value.lower(), value.upper(),
                        "".join(ch for ch in value if ch.isdigit()) or value}:
            if len(variant) >= 6:
                out.extend([variant.encode(), variant.encode("utf-16-le")])
    return out


def _probe_order(template: dict[str, Any]) -> dict[str, Any]:
    order = copy.deepcopy(template)
    order["AmazonOrderId"] = "333-7777777-0000001"
    order["BuyerInfo"] = {"BuyerEmail": DISTINCT["BuyerEmail"], "BuyerName": DISTINCT["BuyerName"],
                          "BuyerTaxInfo": {"CompanyLegalName": DISTINCT["CompanyLegalName"]},
                          "PurchaseOrderNumber": DISTINCT["PurchaseOrderNumber"]}
    order["ShippingAddress"] = {"Name": DISTINCT["ShipName"],
                                "AddressLine1": DISTINCT["AddressLine1"],
                                "City": DISTINCT["City"], "PostalCode": DISTINCT["PostalCode"],
                                "Phone": DISTINCT["Phone"], "CountryCode": "US"}
    return order


@pytest.fixture
def exercised(runtime: Runtime, initialized: bootstrap.InitResult,
              order_examples: list[dict[str, Any]],
              caplog: pytest.LogCaptureFixture) -> Iterator[Runtime]:
    caplog.set_level(logging.DEBUG)
    with start_server(runtime, initialized) as server:
        _exercise(server, _probe_order(order_examples[0]))
    yield runtime


def _exercise(server: Server, order: dict[str, Any]) -> None:
    admin = server.admin_token()
    ingest = server.create_service(admin, "seller app ingest",
                                   [{"role": "ingest", "tenant": "acme"}])
    reader, _ = server.create_person(admin, "paula.reader@example.test", "Paula Reader",
                                     [{"role": "pii-reader", "tenant": "acme"}])
    with server.client(ingest) as client:
        assert client.post("/tenants/acme/orders", json={"orders": [order]}).status_code == 200
        bad = copy.deepcopy(order)
        bad["PurchaseDate"] = DISTINCT["BuyerEmail"]  # a rejected value must not be echoed
        assert client.post("/tenants/acme/orders", json={"orders": [bad]}).status_code == 422
    with server.client(reader, **{"X-Access-Purpose": "fulfillment"}) as client:
        revealed = client.get(f"/tenants/acme/orders/{order['AmazonOrderId']}")
        assert DISTINCT["BuyerEmail"] in revealed.text  # the probe really went in
    with server.client(reader, **{"X-Access-Purpose": "fulfillment"}) as client:
        found = client.get("/tenants/acme/orders", params={"buyer_email": DISTINCT["BuyerEmail"],
                                                           "postal_code": DISTINCT["PostalCode"]})
        assert [o["AmazonOrderId"] for o in found.json()["orders"]] == [order["AmazonOrderId"]]


def _files(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.is_file()]


def test_no_pii_in_any_file_of_the_data_directory(exercised: Runtime) -> None:
    files = _files(exercised.settings.data_dir)
    assert any(path.name == "root.json" for path in files)
    for path in files:
        content = path.read_bytes()
        for needle in _needles():
            assert needle not in content, f"PII found in clear in {path.name}"


def test_no_pii_in_any_database_table(exercised: Runtime) -> None:
    rows_seen = 0
    with exercised.store.engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(table.select()):
                rows_seen += 1
                flat = repr(tuple(row)).encode()
                raw = b"".join(v for v in row if isinstance(v, bytes))
                for needle in _needles():
                    assert needle not in flat and needle not in raw, \
                        f"PII found in clear in table {table.name}"
    assert rows_seen > 10


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_no_pii_in_postgres_text_rendering(exercised: Runtime) -> None:
    """PostgreSQL renders every row as text; the PII is not in it (SQLite: covered above)."""
    assert exercised.store.dialect == "postgresql"
    with exercised.store.engine.connect() as connection:
        for table in metadata.sorted_tables:
            dump = connection.execute(text(
                f'SELECT coalesce(string_agg(t::text, \'\\n\'), \'\') FROM "{table.name}" t'
            )).scalar_one()
            for value in DISTINCT.values():
                assert value not in dump and value.lower() not in dump.lower()


def test_no_pii_in_server_logs(exercised: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    output = "\n".join(record.getMessage() for record in caplog.records)
    for value in DISTINCT.values():
        assert value not in output
