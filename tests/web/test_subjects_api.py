"""The subject-rights API through a real HTTPS server: a security officer restricts a
buyer's processing (201), after which a PII reader's reveal and masked read of their orders
are 451 ``processing_restricted`` (each recorded, with that reason) and a search withholds
them; lifting it (200, then 409) lets them through again. Bad bodies are 422, an unknown
tenant 404, a second restriction 409; an auditor reads the register and changes nothing;
the CLI takes the email on standard input only; nothing answers with the email."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from sellervault.audit.auditor import Auditor
from sellervault.audit.events import SYSTEM_ACTOR
from sellervault.audit.models import EventRow
from sellervault.records import service as records
from sellervault.records.spapi import map_order, validate_order
from sellervault.records.synthetic import synthetic_orders
from tests.cli.helpers import Cli
from tests.support import Server

EMAIL = "rita.restricted@marketplace.example.test"


@pytest.fixture(scope="module")
def officer(server: Server) -> str:
    return server.create_officer(server.admin_token(), "rights desk")


@pytest.fixture(scope="module")
def orders(server: Server) -> list[str]:
    made = list(synthetic_orders(3, start=800))
    for order in made[:2]:
        order["BuyerInfo"]["BuyerEmail"] = EMAIL
    records.ingest(server.runtime, Auditor(server.runtime.audit, SYSTEM_ACTOR), "acme",
                   [map_order(validate_order(order)) for order in made])
    return [str(order["AmazonOrderId"]) for order in made]


@pytest.fixture(scope="module")
def reader(server: Server, officer: str) -> str:
    with server.client(server.admin_token()) as client:
        created = client.post("/accounts", json={
            "kind": "service", "name": "rights reader",
            "grants": [{"role": "pii-reader", "tenant": "acme"}]}).json()
    with server.client(officer) as client:
        assert client.post(f"/approvals/{created['id']}/approve").status_code == 200
    return str(created["api_key"])


def test_a_restricted_buyer_is_refused_to_a_pii_reader_until_lifted(
        server: Server, officer: str, orders: list[str], reader: str) -> None:
    with server.client(officer) as client:
        placed = client.post("/restrictions", json={"tenant": "acme", "buyer_email": EMAIL,
                                                    "reason": "DSR 5121"})
        assert placed.status_code == 201, placed.text
        restriction = placed.json()
        assert restriction["tenant"] == "acme" and restriction["buyer"].startswith("byr_")
        assert EMAIL not in placed.text
        again = client.post("/restrictions", json={"tenant": "acme", "buyer_email": EMAIL,
                                                   "reason": "DSR 5121"})
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "restriction_state"
    with server.client(reader, **{"X-Access-Purpose": "fulfillment"}) as client:
        refused = client.get(f"/tenants/acme/orders/{orders[0]}")
        assert refused.status_code == 451
        assert refused.json()["error"]["code"] == "processing_restricted"
        assert EMAIL not in refused.text
        found = client.get("/tenants/acme/orders", params={"buyer_email": EMAIL})
        assert found.status_code == 200
        assert (found.json()["orders"], found.json()["restricted"]) == ([], 2)
        assert client.get(f"/tenants/acme/orders/{orders[2]}").status_code == 200
    analyst = server.create_service(server.admin_token(), "restricted-order analyst",
                                    [{"role": "analyst", "tenant": "acme"}])
    with server.client(analyst) as client:  # a masked read is refused too
        masked = client.get(f"/tenants/acme/orders/{orders[1]}")
        assert masked.status_code == 451
        assert masked.json()["error"]["code"] == "processing_restricted"
    with server.runtime.store.engine.connect() as connection:
        reasons = list(connection.execute(select(EventRow.outcome, EventRow.status).where(
            EventRow.reason == "processing_restricted")))
    assert ("failed", 451) in [tuple(r) for r in reasons]
    with server.client(officer) as client:
        lifted = client.post(f"/restrictions/{restriction['id']}/lift")
        assert lifted.status_code == 200 and lifted.json()["lifted_at"] is not None
        assert client.post(f"/restrictions/{restriction['id']}/lift").status_code == 409
        assert client.post("/restrictions/rst_000000000000000000000000/lift").status_code \
            == 404
    with server.client(reader, **{"X-Access-Purpose": "fulfillment"}) as client:
        assert client.get(f"/tenants/acme/orders/{orders[0]}").status_code == 200


@pytest.mark.parametrize("body", [
    {"tenant": "acme", "buyer_email": "nobody", "reason": "x"},
    {"tenant": "acme", "buyer_email": EMAIL, "reason": ""},
    {"tenant": "acme", "buyer_email": EMAIL},
    {"tenant": "acme", "buyer_email": EMAIL, "reason": "x", "extra": 1},
    {"tenant": "../etc", "buyer_email": EMAIL, "reason": "x"},
])
def test_a_bad_restriction_is_422_and_changes_nothing(server: Server, officer: str,
                                                      orders: list[str],
                                                      body: dict[str, object]) -> None:
    with server.client(officer) as client:
        before = client.get("/restrictions").json()["restrictions"]
        answer = client.post("/restrictions", json=body)
        assert answer.status_code == 422, answer.text
        assert EMAIL not in answer.text
        assert client.get("/restrictions").json()["restrictions"] == before


def test_a_tenant_without_data_is_404(server: Server, officer: str) -> None:
    with server.client(officer) as client:
        answer = client.post("/restrictions", json={"tenant": "globex", "buyer_email": EMAIL,
                                                    "reason": "x"})
        assert answer.status_code == 404


def test_an_auditor_reads_the_register_and_other_roles_nothing(server: Server,
                                                               orders: list[str]) -> None:
    auditor = server.create_service(server.admin_token(), "rights auditor",
                                    [{"role": "auditor", "tenant": "*"}])
    analyst = server.create_service(server.admin_token(), "rights analyst",
                                    [{"role": "analyst", "tenant": "acme"}])
    body = {"tenant": "acme", "buyer_email": EMAIL, "reason": "x"}
    with server.client(auditor) as client:
        assert client.get("/restrictions").status_code == 200
        assert client.post("/restrictions", json=body).status_code == 403
    with server.client(analyst) as client:
        assert client.get("/restrictions").status_code == 403
        assert client.post("/restrictions", json=body).status_code == 403


def test_the_cli_restricts_and_lifts_with_the_email_on_stdin(
        server: Server, officer: str, orders: list[str], tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    assert cli.run("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                   "--api-key-stdin", stdin=officer + "\n").code == 0
    placed = cli.invoke("restrictions", "place", "--tenant", "acme", "--reason", "DSR 5122",
                        "--buyer-email-stdin", "--json", stdin=EMAIL + "\n")
    assert placed.code == 0, placed
    restriction_id = placed.json()["id"]
    assert EMAIL not in placed.output
    listed = cli.invoke("restrictions", "list", "--active")
    assert listed.code == 0 and restriction_id in listed.stdout
    lifted = cli.invoke("restrictions", "lift", restriction_id)
    assert lifted.code == 0 and "lifted" in lifted.stdout
    again = cli.invoke("restrictions", "lift", restriction_id)
    assert again.code == 1 and "restriction_state" in again.stderr
    no_email = cli.invoke("restrictions", "place", "--tenant", "acme", "--reason", "x")
    assert no_email.code == 1 and "standard input" in no_email.stderr


def test_an_officer_corrects_a_field_a_pii_reader_then_sees(
        server: Server, officer: str, orders: list[str], reader: str, tmp_path: Path) -> None:
    with server.client(officer) as client:
        done = client.post("/corrections", json={
            "tenant": "acme", "amazon_order_id": orders[2],
            "field": "ShippingAddress.AddressLine1", "value": "Berichtigte Gasse 12"})
        assert done.status_code == 200, done.text
        assert done.json()["field"] == "ShippingAddress.AddressLine1"
        assert "Berichtigte" not in done.text
        for bad, status in (({"field": "AmazonOrderId"}, 422), ({"value": ""}, 422),
                            ({"amazon_order_id": "902-9999999-9999999"}, 404)):
            body = {"tenant": "acme", "amazon_order_id": orders[2],
                    "field": "ShippingAddress.City", "value": "Bonn", **bad}
            assert client.post("/corrections", json=body).status_code == status, bad
    with server.client(reader, **{"X-Access-Purpose": "fulfillment"}) as client:
        revealed = client.get(f"/tenants/acme/orders/{orders[2]}").json()
        assert revealed["order"]["ShippingAddress"]["AddressLine1"] == "Berichtigte Gasse 12"
        assert revealed["order"]["ShippingAddress"]["City"] != "Bonn"  # (refused: unchanged)
        assert client.post("/corrections", json={
            "tenant": "acme", "amazon_order_id": orders[2],
            "field": "ShippingAddress.City", "value": "Bonn"}).status_code == 403
    cli = Cli(tmp_path)
    assert cli.run("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                   "--api-key-stdin", stdin=officer + "\n").code == 0
    applied = cli.invoke("corrections", "apply", "--tenant", "acme", "--order", orders[2],
                         "--field", "ShippingAddress.City", "--value-stdin",
                         stdin="Castrop-Rauxel\n")
    assert applied.code == 0, applied
    assert "ShippingAddress.City" in applied.stdout and "Castrop" not in applied.output
    no_value = cli.invoke("corrections", "apply", "--tenant", "acme", "--order", orders[2],
                          "--field", "ShippingAddress.City")
    assert no_value.code == 1 and "standard input" in no_value.stderr
