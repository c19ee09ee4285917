"""Orders with distinctive PII pushed through every path (ingest, a refused ingest, reveal,
search, every kind of refusal with PII in the request, an investigator's pseudonym lookup,
a canary touched, the alerts it raises and the notifications they send, debug logging on):
no byte of PII is in clear anywhere it could land: not in the database (SQLite file, WAL,
shared memory; every PostgreSQL table), not in the security log, not in the checkpoint
file, not in the server's log output at DEBUG, not in any response to a refused request,
not in the webhook or e-mail sent out."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select, text

from sellervault import bootstrap
from sellervault.notifications import service as notifications
from sellervault.records.models import Order
from sellervault.runtime import Runtime
from sellervault.store.schema import metadata
from tests.notifications.peers import WEBHOOK_SECRET, TlsFiles, https_receiver, smtp_server, tls
from tests.support import Server, start_server

__all__ = ["tls"]  # (the peers' certificate fixture)

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


@dataclass
class Sent:
    """Everything that left the vault: refusals' bodies, webhooks, e-mails."""

    responses: list[bytes] = field(default_factory=list)
    webhooks: list[bytes] = field(default_factory=list)
    emails: list[bytes] = field(default_factory=list)


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def exercised(runtime: Runtime, initialized: bootstrap.InitResult,
              order_examples: list[dict[str, Any]], caplog: pytest.LogCaptureFixture,
              tls: TlsFiles, sent: Sent) -> Iterator[Runtime]:
    caplog.set_level(logging.DEBUG)
    with https_receiver(tls, WEBHOOK_SECRET.encode(), runtime.clock) as receiver, \
            smtp_server(tls) as smtp:
        notifying = Runtime(runtime.settings.model_copy(update={
            "notify_webhook_url": SecretStr(receiver.url),
            "notify_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "notify_webhook_ca_file": tls.certificate, "notify_smtp_host": smtp.host,
            "notify_smtp_port": smtp.port, "notify_smtp_ca_file": tls.certificate,
            "notify_email_from": "vault@example.test",
            "notify_email_to": "security@example.test"}),
            runtime.store, runtime.keyring, runtime.clock, counters=runtime.counters)
        with start_server(notifying, initialized) as server:
            _exercise(server, _probe_order(order_examples[0]), sent)
            assert notifying.audit.subscribers.wait_idle(10)
        assert notifications.deliver_due(notifying) >= 2  # the canary's alert, both ways
        sent.webhooks.extend(d.body + repr(d.headers).encode() for d in receiver.deliveries)
        sent.emails.extend(message for _, _, message, _ in smtp.inbox.messages)
    yield runtime


def _exercise(server: Server, order: dict[str, Any], sent: Sent) -> None:
    admin = server.admin_token()
    ingest = server.create_service(admin, "seller app ingest",
                                   [{"role": "ingest", "tenant": "acme"}])
    reader, _ = server.create_person(admin, "paula.reader@example.test", "Paula Reader",
                                     [{"role": "pii-reader", "tenant": "acme"}])
    officer, _ = server.create_person(admin, "otis.officer@example.test", "Otis Officer",
                                      [{"role": "security-officer", "tenant": "*"}])
    email, order_id = DISTINCT["BuyerEmail"], order["AmazonOrderId"]

    def refused(response: httpx.Response, *statuses: int) -> None:
        assert response.status_code in statuses, response.text
        sent.responses.append(response.content + repr(response.headers).encode())

    with server.client(ingest) as client:
        assert client.post("/tenants/acme/orders", json={"orders": [order]}).status_code == 200
        bad = copy.deepcopy(order)
        bad["PurchaseDate"] = email  # a rejected value must not be echoed
        refused(client.post("/tenants/acme/orders", json={"orders": [bad]}), 422)
        refused(client.post("/tenants/acme/orders", content=b'{"orders": [{"BuyerEmail": "'
                            + email.encode() + b'"'), 400, 422)  # not even JSON
        refused(client.get(f"/tenants/acme/orders/{order_id}"), 403)  # wrong role
    with server.client(reader, **{"X-Access-Purpose": "fulfillment"}) as client:
        revealed = client.get(f"/tenants/acme/orders/{order_id}")
        assert email in revealed.text  # the probe really went in
        found = client.get("/tenants/acme/orders", params={"buyer_email": email,
                                                           "postal_code": DISTINCT["PostalCode"]})
        assert [o["AmazonOrderId"] for o in found.json()["orders"]] == [order_id]
        for _ in range(10):  # a tenant it holds no grant on: an unauthorized-calls alert
            refused(client.get("/tenants/globex/orders", params={"buyer_email": email}), 404)
        refused(client.get(f"/tenants/acme/orders/{email}"), 404, 422)
        refused(client.get("/tenants/acme/orders", params={"buyer_phone": "x" * 65}), 422)
    with server.client(reader, **{"X-Access-Purpose": email}) as client:  # PII as a purpose
        refused(client.get(f"/tenants/acme/orders/{order_id}"), 403, 422)
    with server.client(officer) as client:
        lookup = client.post("/tenants/acme/buyer-pseudonyms", json={"buyer_email": email})
        assert lookup.status_code == 200
        assert client.get("/audit/events", params={"buyer": lookup.json()["buyer"]}
                          ).status_code == 200
        refused(client.post("/tenants/acme/buyer-pseudonyms",
                            json={"buyer_email": email, "buyer_phone": DISTINCT["Phone"]}), 422)
    with server.runtime.store.transaction() as session:
        canary = session.scalars(select(Order.amazon_order_id).where(
            Order.tenant_id == "acme", Order.is_canary.is_(True))).first()
    with server.client(reader, **{"X-Access-Purpose": "fulfillment"}) as client:
        assert client.get(f"/tenants/acme/orders/{canary}").status_code == 200


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


def test_no_pii_in_anything_sent_out(exercised: Runtime, sent: Sent) -> None:
    """Refusals, webhooks and e-mails: what left the vault (and a canary's alert did)."""
    assert sent.responses and sent.webhooks and sent.emails
    assert any(b"canary-access" in body for body in sent.webhooks)
    for what in (*sent.responses, *sent.webhooks, *sent.emails):
        for needle in _needles():
            assert needle not in what


def test_no_pii_in_server_logs(exercised: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    output = "\n".join(record.getMessage() for record in caplog.records)
    for value in DISTINCT.values():
        assert value not in output
