"""The deletion API through a real HTTPS server: a security officer files a request for an
order, a buyer or a tenant (201, the deadline 72 hours after receipt), lists and reads the
register (so does an auditor), cancels a pending one and executes another, after which the
order answers 404 as if it never existed. Bad bodies are 422 and change nothing; other roles
are refused; no answer and no event carries the buyer's email."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import ECKey

from sellervault.audit.auditor import Auditor
from sellervault.audit.events import SYSTEM_ACTOR
from sellervault.deletion import deadlines, execution, returns
from sellervault.records import service as records
from sellervault.records.spapi import map_order, validate_order
from sellervault.records.synthetic import synthetic_orders
from tests.cli.helpers import Cli
from tests.support import Server

EMAIL = "erin.erasable@marketplace.example.test"
RECIPIENT = ECKey.generate_key("P-256", private=True)
PUBLIC_KEY, PRIVATE_KEY = RECIPIENT.as_dict(private=False), RECIPIENT.as_dict(private=True)


@pytest.fixture(scope="module")
def officer(server: Server) -> str:
    return server.create_officer(server.admin_token(), "deletion desk")


@pytest.fixture(scope="module")
def second_officer(server: Server) -> str:
    return server.create_officer(server.admin_token(), "second deletion desk")


@pytest.fixture(scope="module")
def orders(server: Server) -> list[str]:
    made = list(synthetic_orders(4, start=700))
    for order in made[:2]:
        order["BuyerInfo"]["BuyerEmail"] = EMAIL
    records.ingest(server.runtime, Auditor(server.runtime.audit, SYSTEM_ACTOR), "acme",
                   [map_order(validate_order(order)) for order in made])
    return [str(order["AmazonOrderId"]) for order in made]


def _body(**fields: object) -> dict[str, object]:
    return {"tenant": "acme", "requested_by": "Amazon DSR ticket 4711", **fields}


def test_an_order_is_filed_executed_and_gone(server: Server, officer: str,
                                             orders: list[str]) -> None:
    reader = server.create_service(server.admin_token(), "deletion-api reader",
                                   [{"role": "analyst", "tenant": "acme"}])
    with server.client(officer) as client:
        filed = client.post("/deletion-requests", json=_body(
            scope="order", amazon_order_id=orders[3], received_at="2026-01-01T00:00:00Z"))
        assert filed.status_code == 201, filed.text
        request = filed.json()
        assert (request["status"], request["scope"], request["return"]) == (
            "pending", "order", False)
        assert datetime.fromisoformat(request["deadline"]) - datetime.fromisoformat(
            request["received_at"]) == timedelta(hours=72)
        assert client.get(f"/deletion-requests/{request['id']}").json()["id"] == request["id"]
        done = client.post(f"/deletion-requests/{request['id']}/execute")
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "completed" and done.json()["certificate_id"]
        again = client.post(f"/deletion-requests/{request['id']}/execute")
        assert again.json() == done.json()
        cancel = client.post(f"/deletion-requests/{request['id']}/cancel")
        assert cancel.status_code == 409 and cancel.json()["error"]["code"] == "deletion_state"
    with server.client(reader) as client:
        assert client.get(f"/tenants/acme/orders/{orders[3]}").status_code == 404
        assert client.get(f"/tenants/acme/orders/{orders[2]}").status_code == 200


def test_an_overdue_request_is_named_by_its_alert(server: Server, officer: str,
                                                  orders: list[str]) -> None:
    """The overdue alarm's subject is the request: the officer goes from the alert to it."""
    with server.client(officer) as client:
        filed = client.post("/deletion-requests", json=_body(
            scope="order", amazon_order_id=orders[2],
            received_at=(server.runtime.clock.now() - timedelta(hours=73)).isoformat()))
        assert filed.status_code == 201, filed.text
        assert deadlines.warn(server.runtime) >= 1
        overdue = [a for a in client.get("/alerts").json()["alerts"]
                   if a["subject"] == filed.json()["id"]]
        assert [(a["rule"], a["severity"]) for a in overdue] == [
            ("deletion-overdue", "critical")]
        assert client.post(f"/deletion-requests/{filed.json()['id']}/cancel").status_code == 200


def test_a_buyer_request_names_a_pseudonym_never_the_email(server: Server, officer: str,
                                                           orders: list[str]) -> None:
    with server.client(officer) as client:
        filed = client.post("/deletion-requests", json=_body(scope="buyer", buyer_email=EMAIL))
        assert filed.status_code == 201
        assert filed.json()["buyer"].startswith("byr_") and EMAIL not in filed.text
        listed = client.get("/deletion-requests", params={"status": "pending"})
        assert filed.json()["id"] in {r["id"] for r in listed.json()["deletion_requests"]}
        cancelled = client.post(f"/deletion-requests/{filed.json()['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        log = client.get("/audit/events", params={"action": "deletions:create"})
    assert EMAIL not in log.text and "erasable" not in log.text


@pytest.mark.parametrize("body", [
    _body(scope="order"),
    _body(scope="buyer"),
    _body(scope="tenant", buyer_email=EMAIL),
    _body(scope="everything"),
    _body(scope="tenant", tenant="Not A Tenant"),
    _body(scope="tenant", requested_by=""),
    _body(scope="tenant", received_at="2026-01-01T00:00:00"),  # no zone
    _body(scope="tenant", received_at="2099-01-01T00:00:00Z"),  # the future
    _body(scope="tenant", extra="field"),
    _body(scope="tenant", **{"return": "yes"}),
    _body(scope="tenant", **{"return": True}),  # to nobody
    _body(scope="tenant", **{"return": True, "return_to": PRIVATE_KEY}),
    _body(scope="tenant", **{"return": True, "return_to": {"kty": "oct", "k": "c2VjcmV0"}}),
    _body(scope="tenant", return_to=PUBLIC_KEY),  # a key, but no return
])
def test_a_bad_request_is_422_and_files_nothing(server: Server, officer: str,
                                                orders: list[str], body: dict[str, object],
                                                ) -> None:
    with server.client(officer) as client:
        before = client.get("/deletion-requests").json()["deletion_requests"]
        answer = client.post("/deletion-requests", json=body)
        assert answer.status_code == 422, answer.text
        assert EMAIL not in answer.text
        assert client.get("/deletion-requests").json()["deletion_requests"] == before


def test_what_is_not_held_is_404(server: Server, officer: str, orders: list[str]) -> None:
    with server.client(officer) as client:
        assert client.post("/deletion-requests", json=_body(
            scope="order", amazon_order_id="902-9999999-9999999")).status_code == 404
        assert client.post("/deletion-requests", json=_body(
            scope="tenant", tenant="globex")).status_code == 404
        assert client.get("/deletion-requests/del_000000000000000000000000").status_code == 404
        assert client.post(
            "/deletion-requests/del_000000000000000000000000/execute").status_code == 404
        assert client.get("/deletion-requests/not-a-request").status_code == 422


@pytest.mark.parametrize(("role", "tenant"), [("admin", "*"), ("operator", "*"),
                                              ("analyst", "acme"), ("ingest", "acme")])
def test_no_other_role_files_or_executes(server: Server, orders: list[str], role: str,
                                         tenant: str) -> None:
    """(Every role against every route, pii-reader included: tests/web/test_role_matrix.)"""
    caller = (server.admin_token() if role == "admin"  # (a person: no service is an admin)
              else server.create_service(server.admin_token(), f"no deleter {role}",
                                         [{"role": role, "tenant": tenant}]))
    with server.client(caller) as client:
        assert client.post("/deletion-requests",
                           json=_body(scope="tenant")).status_code == 403
        assert client.get("/deletion-requests").status_code == 403
        assert client.post(
            "/deletion-requests/del_000000000000000000000000/execute").status_code == 403


def test_an_auditor_reads_the_register_and_changes_nothing(server: Server,
                                                           orders: list[str]) -> None:
    auditor = server.create_service(server.admin_token(), "deletion auditor",
                                    [{"role": "auditor", "tenant": "*"}])
    with server.client(auditor) as client:
        assert client.get("/deletion-requests").status_code == 200
        assert client.post("/deletion-requests", json=_body(scope="tenant")).status_code == 403
        assert client.post(
            "/deletion-requests/del_000000000000000000000000/cancel").status_code == 403


def test_the_cli_files_lists_and_executes_with_the_email_on_stdin(
        server: Server, officer: str, orders: list[str], tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    assert cli.run("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                   "--api-key-stdin", stdin=officer + "\n").code == 0
    filed = cli.invoke("deletions", "file", "--scope", "buyer", "--tenant", "acme",
                       "--requested-by", "ticket 99", "--buyer-email-stdin", "--json",
                       stdin=EMAIL + "\n")
    assert filed.code == 0, filed
    request = filed.json()
    assert request["scope"] == "buyer" and EMAIL not in filed.output
    listed = cli.invoke("deletions", "list", "--status", "pending")
    assert listed.code == 0 and request["id"] in listed.stdout
    done = cli.invoke("deletions", "execute", request["id"])
    assert done.code == 0 and f"Request {request['id']} is completed (step certified), " \
        "certificate cert_" in done.stdout
    shown = cli.invoke("deletions", "show", request["id"], "--json")
    assert shown.json()["orders"] == 2
    again = cli.invoke("deletions", "cancel", request["id"])
    assert again.code == 1 and "deletion_state" in again.stderr
    no_email = cli.invoke("deletions", "file", "--scope", "buyer", "--tenant", "acme",
                          "--requested-by", "ticket 99", "--buyer-email-stdin", stdin="")
    assert no_email.code == 1 and "standard input" in no_email.stderr


def _new_order(server: Server, number: int) -> str:
    [order] = synthetic_orders(1, start=number)
    records.ingest(server.runtime, Auditor(server.runtime.audit, SYSTEM_ACTOR), "acme",
                   [map_order(validate_order(order))])
    return str(order["AmazonOrderId"])


def test_a_resync_of_a_deleted_order_is_withheld_by_the_api_and_the_cli(
        server: Server, officer: str, tmp_path: Path) -> None:
    [order] = synthetic_orders(1, start=790)
    ingester = server.create_service(server.admin_token(), "re-sync ingest",
                                     [{"role": "ingest", "tenant": "acme"}])
    with server.client(ingester) as client:
        assert client.post("/tenants/acme/orders", json={"orders": [order]}).json()[
            "inserted"] == 1
    with server.client(officer) as client:
        filed = client.post("/deletion-requests", json=_body(
            scope="order", amazon_order_id=order["AmazonOrderId"])).json()
        assert client.post(f"/deletion-requests/{filed['id']}/execute").json()[
            "status"] == "completed"
    [fresh] = synthetic_orders(1, start=791)
    with server.client(ingester) as client:
        resent = client.post("/tenants/acme/orders", json={"orders": [order, fresh]})
    assert resent.json() == {"ingested": 1, "inserted": 1, "updated": 0, "withheld": 1}
    cli = Cli(tmp_path)
    assert cli.run("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                   "--api-key-stdin", stdin=ingester + "\n").code == 0
    lines = tmp_path / "orders.jsonl"
    lines.write_text(json.dumps(order) + "\n")
    imported = cli.invoke("import", lines, "--tenant", "acme", "--quiet")
    assert imported.code == 0, imported
    assert "Imported 0 orders into tenant acme. 1 withheld: deleted on request" in \
        imported.stdout
    with server.client(officer) as client:
        found = client.get("/audit/events", params={"action": "orders:withhold"}).json()
    assert [event["count"] for event in found["events"]][-2:] == [1, 1]


def test_data_is_returned_to_the_recipient_before_it_is_deleted(
        server: Server, officer: str, second_officer: str, orders: list[str]) -> None:
    """The returned file is fetched by the officer (who cannot open it), matches the
    recorded SHA-256, and opens with the recipient's private key alone; an auditor reads
    the register but not the file."""
    order = _new_order(server, 720)
    with server.client(officer) as client:
        pending = client.post("/deletion-requests", json=_body(
            scope="order", amazon_order_id=order, **{"return": True},
            return_to=PUBLIC_KEY)).json()
        assert pending["return_key_id"] == RECIPIENT.thumbprint()
        early = client.get(f"/deletion-requests/{pending['id']}/return")
        assert early.status_code == 409 and early.json()["error"]["code"] == "deletion_state"
        unapproved = client.post(f"/deletion-requests/{pending['id']}/execute")
        assert unapproved.status_code == 409  # a second officer approves a return first
        mine = client.post(f"/deletion-requests/{pending['id']}/approve-return")
        assert mine.status_code == 403
        assert mine.json()["error"]["code"] == "second_person_required"
    with server.client(second_officer) as client:
        approved = client.post(f"/deletion-requests/{pending['id']}/approve-return")
        assert approved.status_code == 200 and approved.json()["return_approved_by"]
    with server.client(officer) as client:
        assert client.post(f"/deletion-requests/{pending['id']}/execute").status_code == 200
        done = client.get(f"/deletion-requests/{pending['id']}").json()
        fetched = client.get(f"/deletion-requests/{pending['id']}/return")
        assert fetched.status_code == 200
        assert fetched.headers["content-type"].startswith("text/plain")
        assert hashlib.sha256(fetched.content).hexdigest() == done["return_sha256"]
        assert done["returned"] == 1
        [returned] = returns.open_file(fetched.content, PRIVATE_KEY)
        assert returned["AmazonOrderId"] == order and returned["BuyerInfo"]["BuyerEmail"]
        plain = client.get(f"/deletion-requests/{orders[3]}/return")  # (not an id)
        assert plain.status_code == 422
    auditor = server.create_service(server.admin_token(), "return auditor",
                                    [{"role": "auditor", "tenant": "*"}])
    with server.client(auditor) as client:
        assert client.get(f"/deletion-requests/{pending['id']}").status_code == 200
        assert client.get(f"/deletion-requests/{pending['id']}/return").status_code == 403


def test_a_large_scope_answers_202_and_is_finished_by_the_job(
        server: Server, officer: str, orders: list[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """(The server's own scheduler may run the deletion-executions job first: either way
    the request completes.)"""
    monkeypatch.setattr(execution, "FOREGROUND_LIMIT", 1)
    emails = ("bulk.one@marketplace.example.test", "bulk.two@marketplace.example.test")
    made = list(synthetic_orders(6, start=740))
    for number, order in enumerate(made):
        order["BuyerInfo"]["BuyerEmail"] = emails[number % 2]
    records.ingest(server.runtime, Auditor(server.runtime.audit, SYSTEM_ACTOR), "acme",
                   [map_order(validate_order(order)) for order in made])
    with server.client(officer) as client:
        filed = [client.post("/deletion-requests", json=_body(
            scope="buyer", buyer_email=email)).json() for email in emails]
        begun = client.post(f"/deletion-requests/{filed[0]['id']}/execute")
        assert begun.status_code == 202, begun.text
        assert (begun.json()["status"], begun.json()["step"], begun.json()["orders"]) == (
            "executing", "keys_destroyed", 3)
    cli = Cli(tmp_path)
    assert cli.run("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                   "--api-key-stdin", stdin=officer + "\n").code == 0
    by_cli = cli.invoke("deletions", "execute", filed[1]["id"])
    assert by_cli.code == 0, by_cli
    assert "is executing in the background (step keys_destroyed, unreadable now): 0 of 3 " \
        "orders deleted so far" in by_cli.stdout
    execution.resume_all(server.runtime)  # (the deletion-executions job)
    with server.client(officer) as client:
        for request in filed:
            done = client.get(f"/deletion-requests/{request['id']}").json()
            assert (done["status"], done["rows_deleted"]) == ("completed", 3)
        again = client.post(f"/deletion-requests/{filed[0]['id']}/execute")
        assert again.status_code == 200 and again.json()["certificate_id"]


def test_the_cli_returns_and_the_recipient_opens_offline(
        server: Server, officer: str, second_officer: str, orders: list[str],
        tmp_path: Path) -> None:
    order = _new_order(server, 730)
    public, private = tmp_path / "recipient.jwk", tmp_path / "recipient-private.jwk"
    public.write_text(json.dumps(PUBLIC_KEY))
    private.write_text(json.dumps(PRIVATE_KEY))
    cli = Cli(tmp_path)
    assert cli.run("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                   "--api-key-stdin", stdin=officer + "\n").code == 0
    filed = cli.invoke("deletions", "file", "--scope", "order", "--tenant", "acme",
                       "--order", order, "--requested-by", "ticket 101", "--return-to",
                       str(public), "--json")
    assert filed.code == 0, filed
    request_id = filed.json()["id"]
    second = Cli(tmp_path / "second")
    assert second.run("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                      "--api-key-stdin", stdin=second_officer + "\n").code == 0
    approved = second.invoke("deletions", "approve-return", request_id)
    assert approved.code == 0 and RECIPIENT.thumbprint() in approved.stdout
    assert cli.invoke("deletions", "execute", request_id).code == 0
    out = tmp_path / "returned.jwe.txt"
    fetched = cli.invoke("deletions", "return", request_id, "--out", str(out))
    assert fetched.code == 0, fetched
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert digest in fetched.stdout and oct(out.stat().st_mode & 0o777) == "0o600"
    with server.client(officer) as client:  # (the API says the digest before the bytes)
        assert client.get(f"/deletion-requests/{request_id}/return").headers[
            "x-sellervault-return-sha256"] == digest
    opened = cli.invoke("deletions", "open-return", str(out), "--key", str(private),
                        "--sha256", digest)
    assert opened.code == 0, opened
    assert json.loads(opened.stdout.splitlines()[0])["AmazonOrderId"] == order
    other = cli.invoke("deletions", "open-return", str(out), "--key", str(private),
                       "--sha256", "0" * 64)
    assert other.code == 1 and "nothing printed" in other.stderr and other.stdout == ""
    wrong = cli.invoke("deletions", "open-return", str(out), "--key", str(public))
    assert wrong.code == 1 and "does not open" in wrong.stderr
    bad_key = cli.invoke("deletions", "file", "--scope", "tenant", "--tenant", "acme",
                         "--requested-by", "ticket 102", "--return-to", str(private))
    assert bad_key.code == 1 and "private key" in bad_key.stderr
    assert PRIVATE_KEY["d"] not in bad_key.output


def test_a_legal_hold_is_placed_listed_and_released(server: Server, officer: str,
                                                    orders: list[str], tmp_path: Path) -> None:
    until = (server.runtime.clock.now() + timedelta(days=400)).isoformat()
    with server.client(officer) as client:
        placed = client.post("/legal-holds", json={
            "tenant": "acme", "amazon_order_id": orders[2], "reason": "case 17",
            "until": until})
        assert placed.status_code == 201, placed.text
        hold = placed.json()
        assert (hold["amazon_order_id"], hold["reason"], hold["released_at"]) == (
            orders[2], "case 17", None)
        assert client.post("/legal-holds", json={
            "tenant": "acme", "amazon_order_id": "902-9999999-9999999", "reason": "x",
            "until": until}).status_code == 404
        assert client.post("/legal-holds", json={
            "tenant": "acme", "amazon_order_id": orders[2], "reason": "x",
            "until": "2020-01-01T00:00:00Z"}).status_code == 422
    cli = Cli(tmp_path)
    assert cli.run("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                   "--api-key-stdin", stdin=officer + "\n").code == 0
    listed = cli.invoke("holds", "list")
    assert listed.code == 0 and hold["id"] in listed.stdout and "case 17" in listed.stdout
    released = cli.invoke("holds", "release", hold["id"], "--json")
    assert released.code == 0 and released.json()["released_at"] is not None
    again = cli.invoke("holds", "release", hold["id"])
    assert again.code == 1 and "deletion_state" in again.stderr
    auditor = server.create_service(server.admin_token(), "hold auditor",
                                    [{"role": "auditor", "tenant": "*"}])
    with server.client(auditor) as client:
        assert client.get("/legal-holds").status_code == 200
        assert client.post(f"/legal-holds/{hold['id']}/release").status_code == 403


def test_a_legal_hold_prevails_over_a_deletion_request(server: Server, officer: str) -> None:
    """Filing for a held order is 409 ``legal_hold`` naming the hold, and files nothing; a
    request filed before the hold is refused at execution, nothing destroyed, and is
    pending again (cancellable); a hold on an order being erased is 410."""
    made = list(synthetic_orders(3, start=760))
    records.ingest(server.runtime, Auditor(server.runtime.audit, SYSTEM_ACTOR), "acme",
                   [map_order(validate_order(order)) for order in made])
    held, later, erased = (str(order["AmazonOrderId"]) for order in made)
    until = (server.runtime.clock.now() + timedelta(days=400)).isoformat()

    def hold(client: httpx.Client, order_id: str) -> httpx.Response:
        return client.post("/legal-holds", json={
            "tenant": "acme", "amazon_order_id": order_id, "reason": "case 18",
            "until": until})

    with server.client(officer) as client:
        placed = hold(client, held).json()
        refused = client.post("/deletion-requests", json=_body(scope="order",
                                                               amazon_order_id=held))
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "legal_hold"
        assert placed["id"] in refused.json()["error"]["message"]
        assert held not in [r["amazon_order_id"] for r in client.get(
            "/deletion-requests").json()["deletion_requests"]]
        filed = client.post("/deletion-requests", json=_body(
            scope="order", amazon_order_id=later)).json()
        second = hold(client, later).json()
        stopped = client.post(f"/deletion-requests/{filed['id']}/execute")
        assert stopped.status_code == 409 and stopped.json()["error"]["code"] == "legal_hold"
        after = client.get(f"/deletion-requests/{filed['id']}").json()
        assert (after["status"], after["step"], after["certificate_id"]) == (
            "pending", None, None)
        assert client.post(f"/deletion-requests/{filed['id']}/cancel").status_code == 200
        for hold_id in (placed["id"], second["id"]):
            assert client.post(f"/legal-holds/{hold_id}/release").status_code == 200
        going = client.post("/deletion-requests", json=_body(
            scope="order", amazon_order_id=erased)).json()
        execution.execute(server.runtime, Auditor(server.runtime.audit, SYSTEM_ACTOR),
                          "system", going["id"], until=execution.KEYS_DESTROYED)
        gone = hold(client, erased)
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "erased"
        assert client.post(f"/deletion-requests/{going['id']}/execute").status_code == 200


def test_a_certificate_is_served_printed_and_checked_offline(
        server: Server, officer: str, orders: list[str], tmp_path: Path) -> None:
    with server.client(officer) as client:
        filed = client.post("/deletion-requests", json=_body(  # (the module's last order)
            scope="order", amazon_order_id=orders[2])).json()
        certificate_id = client.post(
            f"/deletion-requests/{filed['id']}/execute").json()["certificate_id"]
        assert certificate_id.startswith("cert_")
        page = client.get(f"/certificates/{certificate_id}/html")
        assert page.status_code == 200 and page.headers["content-type"].startswith(
            "text/html") and "Cryptographic Erase" in page.text
        assert client.get("/certificates/cert_000000000000000000000000").status_code == 404
        assert client.get("/certificates/not-one").status_code == 422
    cli = Cli(tmp_path)
    assert cli.run("login", "--server", server.base_url, "--ca-cert", server.ca_file,
                   "--api-key-stdin", stdin=officer + "\n").code == 0
    document, pem = tmp_path / "certificate.json", tmp_path / "certificates.pem"
    assert cli.invoke("certificates", "get", certificate_id, "--output", document).code == 0
    assert cli.invoke("certificates", "public-key", "--output", pem).code == 0
    checked = cli.invoke("certificates", "verify", document, "--public-key", pem)
    assert checked.code == 0 and f"request {filed['id']}" in checked.stdout
    tampered = json.loads(document.read_text())
    tampered["certificate"]["counts"]["orders"] = 0
    document.write_text(json.dumps(tampered))
    refused = cli.invoke("certificates", "verify", document, "--public-key", pem)
    assert refused.code == 1 and "signature does not match" in refused.stderr
    auditor = server.create_service(server.admin_token(), "certificate auditor",
                                    [{"role": "auditor", "tenant": "*"}])
    analyst = server.create_service(server.admin_token(), "certificate analyst",
                                    [{"role": "analyst", "tenant": "acme"}])
    with server.client(auditor) as client:
        assert client.get(f"/certificates/{certificate_id}").status_code == 200
    with server.client(analyst) as client:
        assert client.get(f"/certificates/{certificate_id}").status_code == 403
        assert client.get("/certificates/public-key").status_code == 403
