"""Reading, exporting and reviewing the security log over the API: security officers and
auditors only."""

from __future__ import annotations

import json

import pytest

from sellervault.access.actions import Action
from sellervault.audit import reading
from sellervault.records.synthetic import synthetic_orders
from tests.support import Server


@pytest.fixture(scope="module")
def admin(server: Server) -> str:
    """One administrator login for the module: each login uses up a TOTP step, and a second
    one within the same 30 seconds would wait for the clock."""
    return server.admin_token()


@pytest.mark.parametrize("role,allowed", [("security-officer", True), ("auditor", True),
                                          ("analyst", False), ("operator", False)])
def test_who_may_read_the_log(server: Server, admin: str, role: str, allowed: bool) -> None:
    tenant = "*" if role in ("security-officer", "auditor", "operator") else "acme"
    token, _ = server.create_person(admin, f"{role}.reader@example.test", "Rita Reader",
                                    [{"role": role, "tenant": tenant}])
    with server.client(token) as client:
        response = client.get("/audit/events", params={"limit": 5})
    if not allowed:
        assert response.status_code == 403
        return
    assert response.status_code == 200
    events = response.json()["events"]
    assert 1 <= len(events) <= 5
    assert events[0]["seq"] == 1 and events[0]["action"] == "accounts:create"
    assert set(events[0]) >= {"seq", "occurred_at", "channel", "action", "outcome", "actor_id",
                              "hash"}


def test_there_is_no_way_to_change_the_log(server: Server, admin: str) -> None:
    with server.client(admin) as client:
        for method in ("DELETE", "PUT", "PATCH", "POST"):
            assert client.request(method, "/audit/events").status_code == 405


def test_the_cursor_is_bounded_to_what_the_column_holds(server: Server, admin: str) -> None:
    """Before: ``after=9223372036854775808`` was a 500 (the driver's OverflowError)."""
    officer, _ = server.create_person(admin, "otto.officer@example.test", "Otto Officer",
                                      [{"role": "security-officer", "tenant": "*"}])
    with server.client(officer) as client:
        for after, status in ((2**63 - 1, 200), (2**63, 422), (10**400, 422), (-1, 422)):
            response = client.get("/audit/events", params={"after": str(after)})
            assert response.status_code == status, (after, response.text)
            if status == 200:
                assert response.json() == {"events": [], "next_cursor": None}
            else:
                fields = response.json()["error"]["fields"]
                assert [field["path"] for field in fields] == ["query.after"]


def test_filters_and_the_cursor_over_https(server: Server, admin: str) -> None:
    """Filters combine; a bad value is a 422 naming the field; a time without a zone is
    refused (a reader's local time would shift the range silently)."""
    auditor_token, _ = server.create_person(admin, "ada.auditor@example.test", "Ada Auditor",
                                            [{"role": "auditor", "tenant": "*"}])
    with server.client(auditor_token) as client:
        page = client.get("/audit/events", params={"action": "accounts:create",
                                                   "outcome": "success", "limit": 2})
        assert page.status_code == 200
        body = page.json()
        assert len(body["events"]) == 2 and body["next_cursor"] == body["events"][-1]["seq"]
        assert {e["action"] for e in body["events"]} == {"accounts:create"}
        rest = client.get("/audit/events", params={"action": "accounts:create",
                                                   "after": body["next_cursor"]}).json()
        assert all(e["seq"] > body["next_cursor"] for e in rest["events"])
        ranged = client.get("/audit/events", params={"since": "2000-01-01T00:00:00+02:00",
                                                     "until": "2000-01-02T00:00:00Z"})
        assert ranged.status_code == 200 and ranged.json()["events"] == []
        for params, field in (({"action": "orders:steal"}, "query.action"),
                              ({"since": "2026-12-05T10:00:00"}, "query.since"),
                              ({"until": "0.5"}, "query.until"),  # not a Unix time
                              ({"until": "2026-02-31T10:00:00Z"}, "query.until"),
                              # (valid, but beyond year 1 or 9999 once in UTC)
                              ({"since": "0001-01-01T00:00:00+01:00"}, "query.since"),
                              ({"until": "9999-12-31T23:59:59-01:00"}, "query.until"),
                              ({"tenant": "Not A Tenant"}, "query.tenant")):
            refused = client.get("/audit/events", params=params)
            assert refused.status_code == 422, params
            assert [f["path"] for f in refused.json()["error"]["fields"]] == [field]


def test_an_investigator_finds_one_buyers_events_by_pseudonym(server: Server,
                                                              admin: str) -> None:
    """The security officer asks for the buyer's pseudonym (the email in the body, never in
    a URL or an event), then filters the log by it: the reveal of that buyer's order, and
    nothing about anyone else."""
    orders = list(synthetic_orders(2, start=4000, seed=3))
    ingest = server.create_service(admin, "pseudonym-ingest", [{"role": "ingest",
                                                                "tenant": "acme"}])
    reader, _ = server.create_person(admin, "pia.pseudonym@example.test", "Pia Reader",
                                     [{"role": "pii-reader", "tenant": "acme"}])
    officer, _ = server.create_person(admin, "ivan.investigator@example.test", "Ivan Inv",
                                      [{"role": "security-officer", "tenant": "*"}])
    with server.client(ingest) as client:
        assert client.post("/tenants/acme/orders", json={"orders": orders}).status_code == 200
    with server.client(reader, **{"X-Access-Purpose": "fulfillment"}) as client:
        for order in orders:
            assert client.get(f"/tenants/acme/orders/{order['AmazonOrderId']}").status_code == 200
    email = orders[0]["BuyerInfo"]["BuyerEmail"]
    with server.client(officer) as client:
        looked_up = client.post("/tenants/acme/buyer-pseudonyms", json={"buyer_email": email})
        assert looked_up.status_code == 200, looked_up.text
        buyer = looked_up.json()["buyer"]
        found = client.get("/audit/events", params={"buyer": buyer, "action": "orders:reveal"})
        assert found.status_code == 200
        events = found.json()["events"]
        assert [(e["target_id"] is not None, e["buyer"]) for e in events] == [(True, buyer)]
        assert email not in found.text
        for body in ({}, {"buyer_email": email, "buyer_phone": "+1 555 0100"},
                     {"buyer_email": email, "note": "x"}):
            refused = client.post("/tenants/acme/buyer-pseudonyms", json=body)
            assert refused.status_code == 422 and email not in refused.text
        assert client.get("/audit/events", params={"buyer": email}).status_code == 422
    with server.client(reader) as client:  # the PII role is not an investigator
        assert client.post("/tenants/acme/buyer-pseudonyms",
                           json={"buyer_email": email}).status_code == 403


def test_reviews_are_recorded_by_officers_and_auditors_only(server: Server, admin: str) -> None:
    auditor, _ = server.create_person(admin, "rhea.reviewer@example.test", "Rhea Reviewer",
                                      [{"role": "auditor", "tenant": "*"}])
    analyst, _ = server.create_person(admin, "ann.analyst.review@example.test", "Ann Analyst",
                                      [{"role": "analyst", "tenant": "acme"}])
    with server.client(auditor) as client:
        before = client.get("/audit/reviews").json()["reviews"]
        head = client.get("/audit/events", params={"limit": 1000}).json()["events"][-1]["seq"]
        made = client.post("/audit/reviews", json={"up_to_seq": head})
        assert made.status_code == 201, made.text
        assert made.json()["up_to_seq"] == head
        again = client.post("/audit/reviews", json={"up_to_seq": head})
        assert again.status_code == 409 and again.json()["error"]["code"] == "review_state"
        beyond = client.post("/audit/reviews", json={"up_to_seq": head + 10**6})
        assert beyond.status_code == 422 and beyond.json()["error"]["code"] == "invalid_review"
        for body in ({}, {"up_to_seq": 0}, {"up_to_seq": "x"}, {"up_to_seq": 2, "note": "x"},
                     {"up_to_seq": 2**63}, [head + 1]):
            assert client.post("/audit/reviews", json=body).status_code == 422
        listed = client.get("/audit/reviews").json()["reviews"]
        assert listed[0]["up_to_seq"] == head
        assert len(listed) == 1 + len(before)  # no refusal recorded a review
    for token in (analyst, admin):  # the administrator runs the service, not its audit
        with server.client(token) as client:
            assert client.post("/audit/reviews", json={"up_to_seq": head + 1}).status_code \
                == 403
            assert client.get("/audit/reviews").status_code == 403


def _exports(server: Server) -> list[tuple[str, int | None]]:
    with server.runtime.store.transaction() as session:
        return [(row.outcome, row.count) for row in reading.list_events(
            session, limit=100_000, matching=reading.EventFilter(action=Action.AUDIT_EXPORT))]


def test_the_log_is_exported_by_officers_and_auditors_only(server: Server, admin: str) -> None:
    """A stream of one event a line, counted in its headers and in its one audit:export
    event; the administrator (who runs the service) and an analyst are refused, and their
    refusal is an event too; a bad format or filter is a 422 that exports nothing."""
    auditor, _ = server.create_person(admin, "egon.exporter@example.test", "Egon Exporter",
                                      [{"role": "auditor", "tenant": "*"}])
    analyst, _ = server.create_person(admin, "ali.analyst.export@example.test", "Ali Analyst",
                                      [{"role": "analyst", "tenant": "acme"}])
    before = _exports(server)
    with server.client(auditor) as client:
        response = client.get("/audit/export", params={"format": "ocsf"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert len(lines) == int(response.headers["X-SellerVault-Export-Count"]) > 1
        assert lines[-1]["metadata"]["uid"] == response.headers["X-SellerVault-Export-Through"]
        assert {line["class_uid"] for line in lines} <= {3002, 6003}
        for params, field in (({"format": "csv"}, "query.format"),
                              ({"action": "orders:steal"}, "query.action"),
                              ({"since": "yesterday"}, "query.since"),
                              ({"since": "0001-01-01T00:00:00+01:00"}, "query.since")):
            refused = client.get("/audit/export", params=params)
            assert refused.status_code == 422, params
            assert [f["path"] for f in refused.json()["error"]["fields"]] == [field]
    for token in (admin, analyst):
        with server.client(token) as client:
            refused = client.get("/audit/export")
            assert refused.status_code == 403 and "seq" not in refused.text
    after = _exports(server)[len(before):]
    assert after[0] == ("success", len(lines))
    assert [outcome for outcome, _ in after[1:]] == ["failed"] * 4 + ["denied"] * 2
