"""Every role against every route and every tenant: least privilege as a whole.

The expected permissions are one table, ``tests.access.test_policy.ALLOWED`` (what each role
may do on a tenant it holds), read together with three rules: every account may see itself;
a tenant-scoped role reaches only the tenant it is granted on (an analyst or ingest grant on
``*`` reaches every tenant; a ``pii-reader`` grant never is on ``*``); a PII operation needs a
permitted purpose. The walk finds the routes in the built app, so a route added later is
walked too, and an action the table does not know fails here until someone decides who may
take it.

Two walks: the decision (``access.decisions.decide``) for every route, role and tenant; and
the same questions asked of a real HTTPS server with a real credential per role, where a
refusal must be the answer the decision gives (403, or 404 on a tenant the caller holds no
grant on), and a permitted request must get past the guard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from sellervault.access.actions import PUBLIC_ACTIONS, PURPOSE_ACTIONS, Action
from sellervault.access.decisions import PERSONS_ONLY, Decision, decide
from sellervault.access.roles import ALL_TENANTS, GLOBAL_ROLES, Grant, Principal, Role
from sellervault.web.app import build_api
from sellervault.web.context import Declaration, declaration_of
from tests.access.test_policy import ALLOWED, EVERY_ACCOUNT
from tests.support import Server

OWN, OTHER = "acme", "globex"
PURPOSE = "fulfillment"
# Every role as it is granted: service-wide roles on "*", tenant roles on OWN; and the two
# tenant roles that may also be granted on every tenant.
HOLDINGS: dict[str, tuple[Role, str]] = {
    **{role.value: (role, ALL_TENANTS if role in GLOBAL_ROLES else OWN) for role in Role},
    "analyst-everywhere": (Role.ANALYST, ALL_TENANTS),
    "ingest-everywhere": (Role.INGEST, ALL_TENANTS),
}


@dataclass(frozen=True)
class Question:
    """One request a route can receive: its method and path, the action it is decided as,
    the tenant it names and the purpose it states."""

    method: str
    path: str
    action: Action
    tenant: str | None
    purpose: str | None


def _questions() -> list[Question]:
    questions: list[Question] = []
    for context in iter_route_contexts(build_api().routes):
        route = context.original_route
        declared = declaration_of(route) if isinstance(route, APIRoute) else None
        assert declared is not None, f"{context.path} declares no action"
        if declared.action in PUBLIC_ACTIONS:
            continue
        for method in sorted(context.methods - {"HEAD"}):
            questions.extend(_asked_of(method, context.path, declared))
    return questions


def _asked_of(method: str, path: str, declared: Declaration) -> list[Question]:
    """A route's questions: per tenant when it names one; with and without a purpose when
    it reads one (a route whose own action needs a purpose is asked with one only, and
    once without: the refusal every role gets)."""
    tenants: list[str | None] = [OWN, OTHER] if declared.tenant_scoped else [None]
    asked = []
    for tenant in tenants:
        asked.append(Question(method, path, declared.action, tenant, None))
        if declared.with_purpose is not None:
            asked.append(Question(method, path, declared.with_purpose, tenant, PURPOSE))
    return asked


QUESTIONS = _questions()


def expected(role: Role, tenant_grant: str, question: Question) -> Decision:
    """The table's answer, derived without asking the policy."""
    reaches = question.tenant is None or role in GLOBAL_ROLES or tenant_grant in (
        question.tenant, ALL_TENANTS)
    if question.tenant is not None and not reaches:
        return Decision.NOT_FOUND
    if question.action in PURPOSE_ACTIONS and question.purpose is None:
        return Decision.PURPOSE_REQUIRED
    if question.action in EVERY_ACCOUNT or question.action in ALLOWED[role]:
        return Decision.ALLOWED
    return Decision.FORBIDDEN


def test_the_walk_finds_every_route() -> None:
    walked = {question.action for question in QUESTIONS}
    assert {Action.ORDERS_INGEST, Action.ORDERS_READ, Action.ORDERS_REVEAL,
            Action.ORDERS_SEARCH, Action.ACCOUNTS_CREATE, Action.AUDIT_READ} <= walked
    assert len(QUESTIONS) >= 15


def test_every_routed_action_is_in_the_table() -> None:
    """An action no row of ALLOWED names (nor EVERY_ACCOUNT) has not been decided for: add it
    to tests/access/test_policy.py ALLOWED under the roles that may take it."""
    tabled = set(EVERY_ACCOUNT).union(*ALLOWED.values())
    unknown = {q.action for q in QUESTIONS} - tabled
    assert not unknown, f"routed but in no row of ALLOWED: {sorted(a.value for a in unknown)}"


@pytest.mark.parametrize("holding", sorted(HOLDINGS))
def test_every_role_on_every_route_and_tenant_gets_what_the_table_says(holding: str) -> None:
    role, tenant = HOLDINGS[holding]
    principal = Principal(f"acc_{holding}", "person", (Grant(role, tenant),))
    for question in QUESTIONS:
        got = decide(principal, question.action, question.tenant, question.purpose)
        assert got is expected(role, tenant, question), (holding, question)


def test_a_grant_on_one_tenant_is_refused_on_the_other_as_not_found() -> None:
    """The attacker's question: a grant for tenant A used on tenant B, for every role and
    every tenant route: not found (the tenant is not acknowledged), never forbidden."""
    for role in sorted(set(Role) - GLOBAL_ROLES):
        principal = Principal("acc_a", "service", (Grant(role, OWN),))
        for question in QUESTIONS:
            if question.tenant == OTHER:
                assert decide(principal, question.action, OTHER, question.purpose) \
                    is Decision.NOT_FOUND, (role, question)


# --- the same walk through a real server ---------------------------------------------------

REFUSED = {Decision.NOT_FOUND: (404, "not_found"), Decision.FORBIDDEN: (403, "forbidden"),
           Decision.PURPOSE_REQUIRED: (403, "purpose_not_permitted")}
GUARD_CODES = {"forbidden", "purpose_not_permitted"}


@pytest.fixture(scope="module")
def credentials(server: Server, order_examples: list[dict[str, Any]]) -> dict[str, str]:
    """A real API key per holding (services: each a program with exactly that grant), and
    the example orders in both tenants."""
    admin = server.admin_token()
    keys: dict[str, str] = {}
    for holding, (role, tenant) in HOLDINGS.items():
        grants = [{"role": role.value, "tenant": tenant}]
        if role in PERSONS_ONLY:  # (a person, signed in: no service holds these roles)
            keys[holding], _ = server.create_person(admin, f"matrix.{holding}@example.test",
                                                    f"Matrix {holding}", grants)
            continue
        with server.client(admin) as client:
            created = client.post("/accounts", json={
                "kind": "service", "name": f"matrix {holding}", "grants": grants}).json()
        keys[holding] = created["api_key"]
        if created["status"] == "pending":  # pii-reader: a security officer approves
            with server.client(keys["security-officer"]) as client:
                assert client.post(f"/approvals/{created['id']}/approve").status_code == 200
    for tenant in (OWN, OTHER):
        with server.client(keys["ingest-everywhere"]) as client:
            response = client.post(f"/tenants/{tenant}/orders",
                                   json={"orders": order_examples})
        assert response.status_code == 200, response.text
    return keys


def _send(server: Server, key: str, question: Question, order_id: str) -> tuple[int, str]:
    """The status and the error code (empty for a success) of one request."""
    response = _request(server, key, question, order_id)
    code = ""
    if response.status_code >= 400 and response.content:
        code = str(response.json().get("error", {}).get("code", ""))
    return response.status_code, code


def _request(server: Server, key: str, question: Question, order_id: str) -> Any:
    path = (question.path.removeprefix("/api/v1").replace("{tenant}", question.tenant or "")
            .replace("{amazon_order_id}", order_id)
            .replace("{account_id}", "acc_000000000000000000000000")
            .replace("{key_id}", "0000000000000000")
            .replace("{alert_id}", "alr_000000000000000000000000"))
    headers = {"X-Access-Purpose": question.purpose} if question.purpose else {}
    with server.client(key, **headers) as client:
        if question.method == "GET":
            return client.get(path, params={"buyer_email": "x@example.test"}
                              if question.action is Action.ORDERS_SEARCH else None)
        return client.request(question.method, path, json={})


@pytest.mark.slow
@pytest.mark.parametrize("holding", sorted(HOLDINGS))
def test_every_role_on_every_route_of_a_real_server(
        server: Server, credentials: dict[str, str], holding: str,
        order_examples: list[dict[str, Any]]) -> None:
    """A refusal is the status and code the decision maps to; a permitted request gets past
    the guard, whatever it then answers (an empty body is a 422, an unknown account a 404 of
    its own, an API key asked to sign out a 403 ``not_a_session``): never the guard's 401,
    403 ``forbidden`` or ``purpose_not_permitted``, nor a 404 on a tenant route, whose
    tenant and order exist."""
    role, tenant = HOLDINGS[holding]
    order_id = str(order_examples[0]["AmazonOrderId"])
    # (signing out last: a person's session ends with it)
    for question in sorted(QUESTIONS, key=lambda asked: asked.action is Action.SESSION_DELETE):
        want = expected(role, tenant, question)
        status, code = _send(server, credentials[holding], question, order_id)
        if want.allowed:
            assert status != 401 and code not in GUARD_CODES, (holding, question, status)
            assert not (question.tenant is not None and status == 404), (holding, question)
        else:
            assert (status, code) == REFUSED[want], (holding, question, status, code)
