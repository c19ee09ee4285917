"""web.body: what a request body may hold, and how a refusal names the place.

Found by fuzzing (issue 10): an ingest key could store an order no read could serve (nesting
201 to 495 deep, a lone surrogate), nesting 496 to ~989 deep or a lone surrogate in an
unknown field was a 500 at ingest, and NaN, Infinity and 1e400 were stored and served back
as text that is not JSON. Every one of them is now a 422 naming where, before anything is
stored.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from sellervault.records.models import Order
from sellervault.web.body import (
    INLINE_PARSE_BYTES,
    MAX_JSON_DEPTH,
    UnacceptableBodyError,
    parse_json,
)
from tests.support import Server, last_request_event

TENANT = "acme"
ORDER_ID = "171-0000000-0000001"


def _refusal(body: bytes) -> tuple[tuple[str | int, ...], str]:
    with pytest.raises(UnacceptableBodyError) as refused:
        parse_json(body)
    return refused.value.location, refused.value.problem


def _nested(depth: int) -> str:
    """A JSON array nested ``depth`` levels (the outermost counted)."""
    return "[" * depth + "]" * depth


# -- the rules, on the parser alone -----------------------------------------------------------

@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400",
                                      "1" + "0" * 400 + ".0"])
def test_numbers_json_cannot_carry_back_are_refused_where_they_are(constant: str) -> None:
    body = f'{{"orders": [{{"OrderTotal": {{"Amount": "1", "X": [0, {constant}]}}}}]}}'
    assert _refusal(body.encode()) == (("body", "orders", 0, "OrderTotal", "X", 1),
                                       "not_finite")


def test_a_tiny_number_is_zero_and_a_huge_integer_is_kept_exactly() -> None:
    """1e-400 is a double (0.0); an integer of any length is exact (no double involved)."""
    big = "1" + "0" * 400
    assert parse_json(f'{{"a": 1e-400, "b": {big}}}'.encode()) == {"a": 0.0, "b": int(big)}


@pytest.mark.parametrize(("text", "location"), [
    ('{"Extra": "\\udfff"}', ("body", "Extra")),
    ('{"Extra": ["ok", "\\ud800x"]}', ("body", "Extra", 1)),
    ('{"Extra": {"\\udc00": 1}}', ("body", "Extra")),  # in a key: the object is named
])
def test_a_lone_surrogate_is_refused_where_it_is(text: str, location: tuple[Any, ...]) -> None:
    assert _refusal(text.encode()) == (location, "invalid_unicode")


@pytest.mark.parametrize(("text", "location"), [
    ('{"email": "a\\u0000@example.test"}', ("body", "email")),
    ('{"Extra": {"a\\u0000": 1}}', ("body", "Extra")),
])
def test_a_nul_character_is_refused_where_it_is(text: str, location: tuple[Any, ...]) -> None:
    """PostgreSQL's text cannot hold one: found by the suite's own fuzzing (a password change
    whose email held a NUL was a 500 on PostgreSQL)."""
    assert _refusal(text.encode()) == (location, "nul_character")


def test_a_surrogate_pair_is_one_character_and_passes() -> None:
    assert parse_json(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001F600"}


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 201, 495, 496, 989, 990, 5000])
def test_nesting_past_the_limit_is_refused_at_any_depth(depth: int) -> None:
    """Past the limit, up to the depths that were stored unreadable (201 to 495), were 500s
    (496 to ~989) or were a 400 (from ~990): always a 422, the field named where the
    standard library's parser can still read the body (up to its recursion limit)."""
    location, problem = _refusal(f'{{"Extra": {_nested(depth - 1)}}}'.encode())
    assert problem == "too_deep"
    assert location in (("body", "Extra", *([0] * (MAX_JSON_DEPTH - 1))), ("body",))
    if depth <= 496:  # (deeper, it depends on the stack the parser is called from)
        assert location[:2] == ("body", "Extra")


def test_nesting_up_to_the_limit_passes() -> None:
    value = parse_json(f'{{"Extra": {_nested(MAX_JSON_DEPTH - 1)}}}'.encode())
    assert json.dumps(value).count("[") == MAX_JSON_DEPTH - 1


@pytest.mark.parametrize(("body", "problem"), [
    (b'{"a": "\xff"}', "invalid_unicode"),
    (b'{"a": 1', "json_invalid"),
    (b'{"a": 1} trailing', "json_invalid"),
    (b"", "json_invalid"),
    ('{"a": "ü"}'.encode("utf-16"), "json_invalid"),  # UTF-8 only (RFC 8259)
])
def test_what_is_not_json_is_refused_naming_the_body(body: bytes, problem: str) -> None:
    assert _refusal(body) == (("body",), problem)


def _large(inner: str) -> bytes:
    """A body over INLINE_PARSE_BYTES (parsed on a worker thread) holding ``inner``."""
    body = f'{{"padding": "{"x" * INLINE_PARSE_BYTES}", "Extra": {inner}}}'.encode()
    assert len(body) > INLINE_PARSE_BYTES
    return body


@pytest.mark.parametrize(("inner", "refusal"), [
    ("[1, NaN]", (("body", "Extra", 1), "not_finite")),
    (_nested(300), (("body",), "too_deep")),
    ('"\\udfff"', (("body",), "invalid_unicode")),
    ("[1,", (("body",), "json_invalid")),
])
def test_a_large_body_is_not_parsed_a_third_time_to_name_the_place(
        inner: str, refusal: tuple[tuple[Any, ...], str]) -> None:
    """Found in review: a refused 14 MiB body was parsed again by the standard library to
    name the place (1.3 s holding the interpreter). NaN and Infinity are still placed (the
    fast parser reads them when asked); what it cannot read names the body."""
    assert _refusal(_large(inner)) == refusal


# -- over HTTPS, from an ingest key's side ----------------------------------------------------

@pytest.fixture(scope="module")
def keys(server: Server) -> dict[str, str]:
    admin = server.admin_token()
    return {
        "ingest": server.create_service(admin, "body prober",
                                        [{"role": "ingest", "tenant": TENANT}]),
        "reader": server.create_person(admin, "rita.reader@example.test", "Rita Reader",
                                       [{"role": "pii-reader", "tenant": TENANT}])[0],
    }


def _order(**extra: Any) -> dict[str, Any]:
    return {"AmazonOrderId": ORDER_ID, "PurchaseDate": "2026-11-01T10:00:00Z",
            "LastUpdateDate": "2026-11-01T10:05:00Z", "OrderStatus": "Shipped", **extra}


def _post(server: Server, token: str, text: str) -> httpx.Response:
    with server.client(token, **{"Content-Type": "application/json"}) as client:
        return client.post(f"/tenants/{TENANT}/orders", content=text.encode())


def _orders_stored(server: Server) -> int:
    with server.runtime.store.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(Order)) or 0)




def _body(order: str) -> str:
    return f'{{"orders": [{order}]}}'


_BASE = json.dumps(_order())[:-1]  # the order's object, left open for one more field

UNSTORABLE = [  # (the order's text, the path named, the problem)
    (_BASE + f', "Extra": {_nested(300)}}}', "body.orders.0.(key)" + ".0" * 29, "too_deep"),
    (_BASE + ', "OrderTotal": {"Amount": "1", "X": ' + _nested(300) + "}}",
     "body.orders.0.OrderTotal.(key)" + ".0" * 28, "too_deep"),
    (_BASE + f', "Extra": {_nested(700)}}}', "body.orders.0.(key)" + ".0" * 29, "too_deep"),
    (_BASE + ', "OrderTotal": {"Amount": "1", "X": "\\udfff"}}',
     "body.orders.0.OrderTotal.(key)", "invalid_unicode"),
    (_BASE + ', "Extra": "\\udfff"}', "body.orders.0.(key)", "invalid_unicode"),
    (_BASE + ', "BuyerInfo": {"BuyerEmail": "a@b.test", "X": NaN}}',
     "body.orders.0.BuyerInfo.(key)", "not_finite"),
    (_BASE + ', "OrderTotal": {"Amount": "1", "X": -Infinity}}',
     "body.orders.0.OrderTotal.(key)", "not_finite"),
    (_BASE + ', "Extra": [1e400]}', "body.orders.0.(key).0", "not_finite"),
]


@pytest.mark.parametrize(("order", "path", "problem"), UNSTORABLE)
def test_an_order_that_could_not_be_read_back_is_refused_and_nothing_is_stored(
        server: Server, keys: dict[str, str], order: str, path: str, problem: str) -> None:
    stored = _orders_stored(server)
    response = _post(server, keys["ingest"], _body(order))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["fields"]) == ("invalid_request",
                                                [{"path": path, "problem": problem}])
    assert "Extra" not in response.text  # an undeclared key is not named
    assert _orders_stored(server) == stored
    event = last_request_event(server)
    assert (event.action, event.outcome, event.status, event.reason) == (
        "orders:ingest", "failed", 422, "invalid_request")
    assert event.actor_id is not None  # the ingest key that sent it


def test_an_order_with_every_kind_of_json_value_reads_back_exactly(
        server: Server, keys: dict[str, str]) -> None:
    """What is accepted is stored and served back as it came, masked and revealed, as JSON."""
    extra = {"Nested": [{"a": [1, -2.5, 1e300, True, None, "ü\U0001F600"]}] * 2,
             "Big": 10**40, "Tiny": 5e-324, "Empty": {}, "Deep": json.loads(_nested(28))}
    response = _post(server, keys["ingest"], json.dumps({"orders": [_order(**extra)]}))
    assert response.status_code == 200, response.text
    with server.client(keys["reader"], **{"X-Access-Purpose": "fulfillment"}) as client:
        revealed = client.get(f"/tenants/{TENANT}/orders/{ORDER_ID}")
    assert revealed.status_code == 200
    order = json.loads(revealed.text)["order"]  # strict: bare NaN/Infinity would not parse
    assert {key: order[key] for key in extra} == extra


def test_invalid_utf8_in_a_login_is_a_422_logged_as_the_login(server: Server) -> None:
    """Before: a 400 ``http_error``, logged as ``http:unrouted``."""
    with server.client(**{"Content-Type": "application/json"}) as client:
        response = client.post("/session", content=b'{"email": "\xff@x.test", "password": "p",'
                                                    b' "totp": "123456"}')
    assert response.status_code == 422
    assert response.json()["error"]["fields"] == [{"path": "body",
                                                   "problem": "invalid_unicode"}]
    event = last_request_event(server)
    assert (event.action, event.outcome, event.status) == ("session:create", "failed", 422)


def test_a_nul_character_in_a_password_change_is_a_422_not_a_500(server: Server) -> None:
    """Found by the suite's fuzzing: on PostgreSQL the email reached a query and failed."""
    with server.client() as client:
        response = client.post("/password", json={
            "email": "a\u0000@example.test", "current_password": "x", "totp": "123456",
            "new_password": "y"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["fields"] == [{"path": "body.email",
                                                   "problem": "nul_character"}]
