"""Kill switches through the HTTPS API: an operator stops reveals, a tenant or an account; the
stopped request is a 403 ``kill_switch`` (not a missing grant) and a logged denial; only an
operator may pull a switch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from sellervault.audit.models import EventRow
from tests.support import Server

TENANT = "kill-test"


@pytest.fixture(scope="module")
def crew(server: Server, order_examples: list[dict[str, Any]]) -> dict[str, Any]:
    admin = server.admin_token()
    operator = server.create_service(admin, "on-call operator",
                                     [{"role": "operator", "tenant": "*"}])
    ingest = server.create_service(admin, "kill test ingest",
                                   [{"role": "ingest", "tenant": TENANT}])
    analyst = server.create_service(admin, "kill test analyst",
                                    [{"role": "analyst", "tenant": TENANT}])
    with server.client(ingest) as client:
        assert client.post(f"/tenants/{TENANT}/orders",
                           json={"orders": order_examples}).status_code == 200
    return {"admin": admin, "operator": operator, "ingest": ingest, "analyst": analyst,
            "order": order_examples[0]["AmazonOrderId"]}


def _pull(server: Server, token: str, change: str, scope: str,
          subject: str | None = None) -> int:
    with server.client(token) as client:
        return client.post(f"/killswitches/{change}",
                           json={"scope": scope, "subject": subject}).status_code


def test_a_tenant_switch_stops_the_tenant_with_its_own_answer(server: Server,
                                                              crew: dict[str, Any]) -> None:
    path = f"/tenants/{TENANT}/orders/{crew['order']}"
    with server.client(crew["analyst"]) as client:
        assert client.get(path).status_code == 200
        assert _pull(server, crew["operator"], "set", "tenant", TENANT) == 204
        stopped = client.get(path)
        assert stopped.status_code == 403
        assert stopped.json()["error"]["code"] == "kill_switch"
        with server.runtime.store.engine.connect() as connection:
            event = connection.execute(select(EventRow).where(
                EventRow.request_id == stopped.headers["x-request-id"])).one()
        assert (event.outcome, event.reason, event.tenant_id) == (
            "denied", "kill_switch", TENANT)
        with server.client(crew["operator"]) as operator:
            listed = operator.get("/killswitches").json()["killswitches"]
        assert [(s["scope"], s["subject"]) for s in listed] == [("tenant", TENANT)]
        assert _pull(server, crew["operator"], "clear", "tenant", TENANT) == 204
        assert client.get(path).status_code == 200


def test_an_account_switch_stops_that_account_everywhere(server: Server,
                                                         crew: dict[str, Any]) -> None:
    with server.client(crew["analyst"]) as client:
        me = client.get("/session").json()["account_id"]
        assert _pull(server, crew["operator"], "set", "account", me) == 204
        assert client.get("/session").status_code == 403
        with server.client(crew["ingest"]) as other:
            assert other.get("/session").status_code == 200
        assert _pull(server, crew["operator"], "clear", "account", me) == 204
        assert client.get("/session").status_code == 200


@pytest.mark.parametrize("who", ["admin", "analyst", "ingest"])
def test_only_an_operator_pulls_a_switch(server: Server, crew: dict[str, Any],
                                         who: str) -> None:
    assert _pull(server, crew[who], "set", "reveals") == 403
    with server.client(crew["operator"]) as operator:
        assert operator.get("/killswitches").json()["killswitches"] == []


def test_a_tenant_switch_stops_the_requests_whose_body_names_the_tenant(
        server: Server, crew: dict[str, Any]) -> None:
    """A correction, a restriction, a deletion request and a legal hold name their tenant
    in the body, not the path: they used to go through on a switched-off tenant (a buyer's
    email rewritten on a frozen tenant). Refused now, with nothing done; on another tenant
    the switch stops nothing."""
    officer = server.create_officer(crew["admin"], "kill test officer")
    order = crew["order"]
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    writes = [
        ("/corrections", {"amazon_order_id": order, "field": "BuyerInfo.BuyerEmail",
                          "value": "someone.else@example.test"}),
        ("/restrictions", {"buyer_email": "frozen.buyer@example.test", "reason": "ticket 1"}),
        ("/deletion-requests", {"scope": "order", "amazon_order_id": order,
                                "requested_by": "ticket 2"}),
        ("/legal-holds", {"amazon_order_id": order, "reason": "case 3", "until": until}),
    ]
    assert _pull(server, crew["operator"], "set", "tenant", TENANT) == 204
    try:
        with server.client(officer) as client:
            for path, body in writes:
                stopped = client.post(path, json={"tenant": TENANT, **body})
                assert stopped.status_code == 403, (path, stopped.text)
                assert stopped.json()["error"]["code"] == "kill_switch", path
                with server.runtime.store.engine.connect() as connection:
                    event = connection.execute(select(EventRow).where(
                        EventRow.request_id == stopped.headers["x-request-id"])).one()
                assert (event.reason, event.tenant_id) == ("kill_switch", TENANT), path
            elsewhere = client.post("/restrictions", json={
                "tenant": "elsewhere", "buyer_email": "other.buyer@example.test",
                "reason": "ticket 4"})
            assert elsewhere.status_code == 404, elsewhere.text  # (no such tenant: not stopped)
            assert client.get("/restrictions", params={"tenant": TENANT}).json()[
                "restrictions"] == []
            assert client.get("/legal-holds").json()["legal_holds"] == []
    finally:
        assert _pull(server, crew["operator"], "clear", "tenant", TENANT) == 204


def test_a_tenant_switch_stops_what_acts_on_the_tenant_by_an_id(
        server: Server, crew: dict[str, Any]) -> None:
    """A deletion request, a hold and a restriction made before the switch: executing,
    cancelling or approving the request, downloading its return, releasing the hold and
    lifting the restriction act on the frozen tenant too. All wait for the switch."""
    officer = server.create_officer(crew["admin"], "kill test second officer")
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    with server.client(officer) as client:
        filed = client.post("/deletion-requests", json={
            "tenant": TENANT, "scope": "order", "amazon_order_id": crew["order"],
            "requested_by": "ticket 5"})
        assert filed.status_code == 201, filed.text
        held = client.post("/legal-holds", json={
            "tenant": TENANT, "amazon_order_id": crew["order"], "reason": "case 6",
            "until": until})
        assert held.status_code == 201, held.text
        restricted = client.post("/restrictions", json={
            "tenant": TENANT, "buyer_email": "frozen.buyer.2@example.test",
            "reason": "ticket 7"})
        assert restricted.status_code == 201, restricted.text
    request_id, hold_id = filed.json()["id"], held.json()["id"]
    assert _pull(server, crew["operator"], "set", "tenant", TENANT) == 204
    try:
        with server.client(officer) as client:
            for method, path in [
                    ("POST", f"/deletion-requests/{request_id}/execute"),
                    ("POST", f"/deletion-requests/{request_id}/cancel"),
                    ("POST", f"/deletion-requests/{request_id}/approve-return"),
                    ("GET", f"/deletion-requests/{request_id}/return"),
                    ("POST", f"/legal-holds/{hold_id}/release"),
                    ("POST", f"/restrictions/{restricted.json()['id']}/lift")]:
                stopped = client.request(method, path)
                assert stopped.status_code == 403, (path, stopped.text)
                assert stopped.json()["error"]["code"] == "kill_switch", path
            assert client.get(f"/deletion-requests/{request_id}").json()["status"] == "pending"
    finally:
        assert _pull(server, crew["operator"], "clear", "tenant", TENANT) == 204
    with server.client(officer) as client:  # (as they were: the switch changed nothing)
        assert client.post(f"/legal-holds/{hold_id}/release").status_code == 200
        assert client.post(f"/deletion-requests/{request_id}/cancel").status_code == 200
