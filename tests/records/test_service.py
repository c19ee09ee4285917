"""Ingest, read, reveal and search at the service layer, including what an attacker with
write access to the database can and cannot achieve."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import select, text, update

from sellervault import bootstrap
from sellervault.access.errors import BudgetExhaustedError, PurposeNotPermittedError
from sellervault.access.models import BudgetRow
from sellervault.access.roles import Grant, Role
from sellervault.accounts import service as accounts
from sellervault.accounts.errors import UnauthenticatedError
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel
from sellervault.audit.models import EventRow
from sellervault.config import Settings
from sellervault.crypto.errors import DecryptionError
from sellervault.crypto.models import DataKey
from sellervault.records import service as records
from sellervault.records.errors import OrderNotFoundError, SearchRequestError
from sellervault.records.models import Order
from sellervault.records.spapi import map_order, validate_order
from sellervault.records.synthetic import synthetic_orders
from sellervault.runtime import Runtime
from tests.support import admin_of, in_event_loop, system_auditor


def reveal(rt: Runtime, *args: Any) -> dict[str, Any]:
    """``records.reveal``, run to its end from this (blocking) test."""
    return rt.store.call(records.reveal, rt, *args)


def read_masked(rt: Runtime, *args: Any) -> dict[str, Any]:
    return rt.store.call(records.read_masked, rt, *args)



def _auditor(runtime: Runtime) -> Auditor:
    return Auditor(runtime.audit, Actor(Channel.API, actor_id="acc_test"))


def _mapped(raw: list[dict[str, Any]]) -> list[Any]:
    return [map_order(validate_order(o)) for o in raw]


@pytest.fixture
def stored(runtime: Runtime) -> list[dict[str, Any]]:
    raw = list(synthetic_orders(3))
    records.ingest(runtime, _auditor(runtime), "acme", _mapped(raw))
    return raw


def _row(runtime: Runtime, amazon_id: str) -> Order:
    with runtime.store.transaction() as session:
        row = session.scalar(select(Order).where(Order.amazon_order_id == amazon_id))
        assert row is not None
        return row


def test_reveal_returns_exactly_what_was_ingested(runtime: Runtime,
                                                  stored: list[dict[str, Any]]) -> None:
    order = reveal(runtime, _auditor(runtime), "acme", stored[0]["AmazonOrderId"],
                           "fulfillment")
    assert order["BuyerInfo"] == stored[0]["BuyerInfo"]
    assert order["ShippingAddress"] == stored[0]["ShippingAddress"]


def test_reveal_and_masked_read_return_unusual_values_exactly(runtime: Runtime) -> None:
    """Whatever JSON an order held comes back as it went in: big integers, tiny floats,
    non-ASCII text, nulls inside undeclared objects, lists."""
    raw = copy.deepcopy(next(iter(synthetic_orders(1, start=700))))
    raw["BuyerInfo"]["BuyerName"] = "Zoë Łukasz 山田 \u2028"
    raw["GiftMessage"] = {"Text": "für dich", "Lines": [None, 1.5e-7, 10**30, True]}
    raw["PromotionIds"] = ["p-1", "p-2"]
    records.ingest(runtime, _auditor(runtime), "acme", _mapped([raw]))
    order = reveal(runtime, _auditor(runtime), "acme", raw["AmazonOrderId"],
                           "fulfillment")
    for key in ("BuyerInfo", "ShippingAddress", "GiftMessage", "PromotionIds", "OrderTotal"):
        assert order[key] == raw[key], key
    masked = read_masked(runtime, _auditor(runtime), "acme", raw["AmazonOrderId"])
    assert masked["GiftMessage"] == {"Text": "***", "Lines": [None, "***", "***", "***"]}
    assert masked["PromotionIds"] == ["***", "***"]  # not classified: encrypted too


def test_each_order_has_its_own_data_key(runtime: Runtime, stored: list[dict[str, Any]]) -> None:
    keys = {_row(runtime, o["AmazonOrderId"]).data_key_id for o in stored}
    assert len(keys) == len(stored)


def test_resending_an_order_updates_in_place(runtime: Runtime,
                                             stored: list[dict[str, Any]]) -> None:
    changed = copy.deepcopy(stored[0])
    changed["BuyerInfo"]["BuyerName"] = "Changed Name"
    before = _row(runtime, changed["AmazonOrderId"])
    result = records.ingest(runtime, _auditor(runtime), "acme", _mapped([changed, changed]))
    after = _row(runtime, changed["AmazonOrderId"])
    assert (result.inserted, result.updated) == (0, 1)
    assert (after.id, after.data_key_id) == (before.id, before.data_key_id)
    assert after.buyer_ct != before.buyer_ct
    revealed = reveal(runtime, _auditor(runtime), "acme", changed["AmazonOrderId"],
                              "tax-invoicing")
    assert revealed["BuyerInfo"]["BuyerName"] == "Changed Name"


def test_a_ciphertext_moved_to_another_row_fails_to_decrypt(
        runtime: Runtime, stored: list[dict[str, Any]]) -> None:
    victim, target = (_row(runtime, o["AmazonOrderId"]) for o in stored[:2])
    with runtime.store.transaction() as session:
        session.execute(update(Order).where(Order.id == target.id).values(
            buyer_ct=victim.buyer_ct, address_ct=victim.address_ct))
    with pytest.raises(DecryptionError):
        reveal(runtime, _auditor(runtime), "acme", stored[1]["AmazonOrderId"],
                       "fulfillment")


def test_a_row_pointed_at_another_orders_data_key_fails(
        runtime: Runtime, stored: list[dict[str, Any]]) -> None:
    victim, target = (_row(runtime, o["AmazonOrderId"]) for o in stored[:2])
    with runtime.store.transaction() as session:
        session.execute(update(Order).where(Order.id == target.id).values(
            buyer_ct=victim.buyer_ct, address_ct=victim.address_ct,
            data_key_id=victim.data_key_id))
    with pytest.raises(DecryptionError):
        reveal(runtime, _auditor(runtime), "acme", stored[1]["AmazonOrderId"],
                       "fulfillment")


def test_buyer_and_address_records_cannot_be_swapped(
        runtime: Runtime, stored: list[dict[str, Any]]) -> None:
    row = _row(runtime, stored[0]["AmazonOrderId"])
    with runtime.store.transaction() as session:
        session.execute(update(Order).where(Order.id == row.id).values(
            buyer_ct=row.address_ct, address_ct=row.buyer_ct))
    with pytest.raises(DecryptionError):
        reveal(runtime, _auditor(runtime), "acme", stored[0]["AmazonOrderId"],
                       "fulfillment")


def test_a_row_moved_to_another_tenant_fails(runtime: Runtime,
                                             stored: list[dict[str, Any]]) -> None:
    other = _mapped(list(synthetic_orders(1, start=100, seed=99)))
    records.ingest(runtime, _auditor(runtime), "globex", other)
    row = _row(runtime, stored[0]["AmazonOrderId"])
    with runtime.store.transaction() as session:
        session.execute(update(Order).where(Order.id == row.id).values(tenant_id="globex"))
        session.execute(update(DataKey).where(DataKey.id == row.data_key_id).values(
            tenant_id="globex"))
    with pytest.raises(DecryptionError):
        reveal(runtime, _auditor(runtime), "globex", stored[0]["AmazonOrderId"],
                       "fulfillment")


def test_tenants_do_not_see_each_others_orders(runtime: Runtime,
                                               stored: list[dict[str, Any]]) -> None:
    with pytest.raises(OrderNotFoundError):
        read_masked(runtime, _auditor(runtime), "globex", stored[0]["AmazonOrderId"])
    email = stored[0]["BuyerInfo"]["BuyerEmail"]
    assert _search(runtime, "globex", buyer_email=email) == []
    assert len(_search(runtime, "acme", buyer_email=email)) == 1


def _search(runtime: Runtime, tenant: str, principal: str = "acc_test",
            **criteria: str) -> list[dict[str, Any]]:
    return records.search(runtime, _auditor(runtime), principal, tenant, purpose="fulfillment",
                          **criteria).orders


def _events(runtime: Runtime) -> list[Any]:
    with runtime.store.engine.connect() as connection:
        return list(connection.execute(text("SELECT * FROM security_events ORDER BY seq")))


def test_a_search_event_names_its_purpose_and_criteria_kinds_never_values(
        runtime: Runtime, stored: list[dict[str, Any]]) -> None:
    order = stored[0]
    email = order["BuyerInfo"]["BuyerEmail"]
    postal = order["ShippingAddress"]["PostalCode"]
    assert len(_search(runtime, "acme", buyer_email=email, postal_code=postal)) == 1
    event = _events(runtime)[-1]
    assert (event.action, event.purpose, event.criteria, event.count) == (
        "orders:search", "fulfillment", "buyer-email+postal-code", 1)
    assert email not in repr(tuple(event)) and postal not in repr(tuple(event))


def test_each_principal_has_a_budget_of_searches_per_hour(
        settings: Settings, runtime: Runtime, stored: list[dict[str, Any]]) -> None:
    """Looping over postal codes (the review's attack) stops at the budget; another
    principal still has its own; nothing is written for a refused search."""
    limited = Runtime(settings.model_copy(update={"search_budget_per_hour": 3}),
                      runtime.store, runtime.keyring, runtime.clock)
    for code in ("10001", "10002", "10003"):
        _search(limited, "acme", principal="acc_mapper", postal_code=code)
    before = len(_events(runtime))
    with pytest.raises(BudgetExhaustedError) as refused:
        _search(limited, "acme", principal="acc_mapper", postal_code="10004")
    assert 0 < refused.value.retry_after <= 3600
    assert len(_events(runtime)) == before
    _search(limited, "acme", principal="acc_someone_else", postal_code="10004")


def test_a_masked_read_that_fails_is_not_logged_as_a_success(
        runtime: Runtime, stored: list[dict[str, Any]]) -> None:
    """An order whose stored attributes no longer parse (here, a row edited in the database):
    the read fails before its event, so the log does not record a read that served nothing.
    (Before, the event committed first: issue 10, finding 2.)"""
    amazon_id = stored[0]["AmazonOrderId"]
    with runtime.store.transaction() as session:
        session.execute(update(Order).where(Order.amazon_order_id == amazon_id)
                        .values(attributes='{"Extra": ' + '[' * 300 + ']' * 300 + '}'))
    before = len(_events(runtime))
    with pytest.raises(ValueError):
        read_masked(runtime, _auditor(runtime), "acme", amazon_id)
    assert len(_events(runtime)) == before


def test_reveal_refuses_an_unlisted_purpose(runtime: Runtime,
                                            stored: list[dict[str, Any]]) -> None:
    with pytest.raises(PurposeNotPermittedError):
        reveal(runtime, _auditor(runtime), "acme", stored[0]["AmazonOrderId"],
                       "marketing")


def test_search_refuses_an_unlisted_purpose_and_logs_nothing(
        runtime: Runtime, stored: list[dict[str, Any]]) -> None:
    """The service checks the purpose again, whoever called it: free text never reaches the
    search's event, and no budget is taken."""
    before = len(_events(runtime))
    with pytest.raises(PurposeNotPermittedError):
        records.search(runtime, _auditor(runtime), "acc_prober", "acme", purpose="marketing",
                       buyer_email=stored[0]["BuyerInfo"]["BuyerEmail"])
    assert len(_events(runtime)) == before
    with runtime.store.transaction() as session:
        assert session.get(BudgetRow, ("acc_prober", records.SEARCH_BUDGET)) is None


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # (event loop: PG)
def test_the_event_loop_forms_answer_and_refuse_as_the_blocking_ones(
        settings: Settings, runtime: Runtime, stored: list[dict[str, Any]]) -> None:
    """``reveal_async`` / ``read_masked_async`` (a server's hot path on PostgreSQL), in a
    fresh process whose tenant key is not unwrapped yet (it is, on a worker thread)."""
    fresh = bootstrap.open_runtime(settings)
    amazon_id = stored[0]["AmazonOrderId"]

    async def work() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        assert not fresh.keyring.has_kek("acme", 1)
        revealed = await records.reveal(fresh, _auditor(fresh), "acme", amazon_id,
                                              "fulfillment")
        again = await records.reveal(fresh, _auditor(fresh), "acme", amazon_id,
                                           "fulfillment")  # the key cached: no thread
        masked = await records.read_masked(fresh, _auditor(fresh), "acme", amazon_id)
        with pytest.raises(OrderNotFoundError):
            await records.reveal(fresh, _auditor(fresh), "globex", amazon_id,
                                       "fulfillment")
        with pytest.raises(PurposeNotPermittedError):
            await records.reveal(fresh, _auditor(fresh), "acme", amazon_id, "marketing")
        return revealed, again, masked

    try:
        revealed, again, masked = in_event_loop(fresh, work)
    finally:
        fresh.close()
    assert revealed == again == reveal(runtime, _auditor(runtime), "acme", amazon_id,
                                               "fulfillment")
    assert masked == read_masked(runtime, _auditor(runtime), "acme", amazon_id)


def test_canaries_are_flagged_and_listed(runtime: Runtime, stored: list[dict[str, Any]]) -> None:
    canary = _mapped(list(synthetic_orders(1, start=500, seed=5)))
    records.seed_canaries(runtime, _auditor(runtime), "acme", canary)
    assert canary[0].amazon_order_id in records.list_canaries(runtime, _auditor(runtime),
                                                              "acme")


def test_resending_a_canary_keeps_it_a_canary(runtime: Runtime,
                                             stored: list[dict[str, Any]]) -> None:
    canary = _mapped(list(synthetic_orders(1, start=600, seed=5)))
    records.seed_canaries(runtime, _auditor(runtime), "acme", canary)
    records.ingest(runtime, _auditor(runtime), "acme", canary)  # an ordinary re-send
    assert canary[0].amazon_order_id in records.list_canaries(runtime, _auditor(runtime),
                                                              "acme")


def test_touching_a_canary_is_an_event_of_its_own_and_an_ordinary_order_is_not(
        runtime: Runtime, stored: list[dict[str, Any]]) -> None:
    """Read, revealed or found by a search: one ``canaries:touched`` event each (which the
    canary-access detector acts on); the reader's answer is an order like any other."""
    raw = list(synthetic_orders(1, start=700, seed=5))
    canary = _mapped(raw)
    records.seed_canaries(runtime, _auditor(runtime), "acme", canary)
    amazon_id = canary[0].amazon_order_id
    read_masked(runtime, _auditor(runtime), "acme", stored[0]["AmazonOrderId"])
    assert _touched(runtime) == []
    read_masked(runtime, _auditor(runtime), "acme", amazon_id)
    reveal(runtime, _auditor(runtime), "acme", amazon_id, "fulfillment")
    email = raw[0]["BuyerInfo"]["BuyerEmail"]
    found = records.search(runtime, _auditor(runtime), "acc_test", "acme",
                           purpose="fulfillment", buyer_email=email).orders
    assert [o["AmazonOrderId"] for o in found] == [amazon_id]
    touched = _touched(runtime)
    assert len(touched) == 3
    assert {(e.target_type, e.tenant_id, e.actor_id) for e in touched} == {
        ("canary", "acme", "acc_test")}


@pytest.mark.parametrize("touch", ["read", "reveal", "search by email", "search by ZIP code"])
def test_a_canary_touched_disables_the_reader_before_it_is_answered(
        runtime: Runtime, initialized: bootstrap.InitResult, touch: str) -> None:
    """No detector is attached here: the lock happens in the request itself, so the
    reader's very next request is refused however fast it follows. A search by ZIP code
    alone is the exception (an honest search for a real buyer's code finds the canaries that
    share it: the detector alerts, nobody is locked)."""
    raw = list(synthetic_orders(1, start=720, seed=5))
    records.seed_canaries(runtime, _auditor(runtime), "acme", _mapped(raw))
    reader = accounts.create_service(runtime, system_auditor(runtime), admin_of(initialized),
                                     name="nosy reader", grants=[Grant(Role.ANALYST, "acme")])
    assert runtime.store.call(accounts.authenticate, runtime, reader.api_key)  # (live)
    auditor = Auditor(runtime.audit, Actor(channel=Channel.API, actor_id=reader.id,
                                           source_ip="203.0.113.9"))
    amazon_id = raw[0]["AmazonOrderId"]
    if touch == "read":
        read_masked(runtime, auditor, "acme", amazon_id)
    elif touch == "reveal":
        reveal(runtime, auditor, "acme", amazon_id, "fulfillment")
    else:
        criteria = ({"buyer_email": raw[0]["BuyerInfo"]["BuyerEmail"]} if touch.endswith("email")
                    else {"postal_code": raw[0]["ShippingAddress"]["PostalCode"]})
        found = records.search(runtime, auditor, reader.id, "acme", purpose="fulfillment",
                               **criteria).orders
        assert amazon_id in {order["AmazonOrderId"] for order in found}
    if touch == "search by ZIP code":
        assert runtime.store.call(accounts.authenticate, runtime, reader.api_key)
        return
    with pytest.raises(UnauthenticatedError):
        runtime.store.call(accounts.authenticate, runtime, reader.api_key)


def test_with_auto_lock_off_a_canary_touched_locks_nobody(
        settings: Settings, initialized: bootstrap.InitResult) -> None:
    runtime = bootstrap.open_runtime(settings.model_copy(update={"auto_lock": False}))
    try:
        raw = list(synthetic_orders(1, start=740, seed=5))
        records.seed_canaries(runtime, _auditor(runtime), "acme", _mapped(raw))
        reader = accounts.create_service(runtime, system_auditor(runtime),
                                         admin_of(initialized), name="nosy reader",
                                         grants=[Grant(Role.ANALYST, "acme")])
        auditor = Auditor(runtime.audit, Actor(channel=Channel.API, actor_id=reader.id))
        reveal(runtime, auditor, "acme", raw[0]["AmazonOrderId"], "fulfillment")
        assert runtime.store.call(accounts.authenticate, runtime, reader.api_key)
    finally:
        runtime.close()


def _touched(runtime: Runtime) -> list[Any]:
    with runtime.store.engine.connect() as connection:
        return list(connection.execute(select(EventRow).where(
            EventRow.action == "canaries:touched")))


# -- the buyer's pseudonym in the events -------------------------------------------------------

def _pseudonym(runtime: Runtime, tenant: str, **buyer: str) -> str:
    return records.buyer_pseudonym(runtime, _auditor(runtime), "acc_test", tenant, **buyer)


def test_reads_reveals_and_a_one_buyer_search_name_the_buyer_by_pseudonym(
        runtime: Runtime, stored: list[dict[str, Any]]) -> None:
    """An investigator's lookup gives the pseudonym these events carry, and nothing of the
    buyer is in any of them."""
    order = stored[0]
    email = order["BuyerInfo"]["BuyerEmail"]
    amazon_id = order["AmazonOrderId"]
    read_masked(runtime, _auditor(runtime), "acme", amazon_id)
    reveal(runtime, _auditor(runtime), "acme", amazon_id, "fulfillment")
    _search(runtime, "acme", buyer_email=email.upper())  # the normalised email's buyer
    buyer = _pseudonym(runtime, "acme", buyer_email=email)
    events = _events(runtime)[-4:]
    assert [(e.action, e.buyer) for e in events] == [
        ("orders:read", buyer), ("orders:reveal", buyer), ("orders:search", buyer),
        ("buyers:pseudonym", buyer)]
    assert all(email not in repr(tuple(e)) for e in events)


def test_each_buyer_and_each_tenant_has_its_own_pseudonym(
        runtime: Runtime, stored: list[dict[str, Any]]) -> None:
    emails = [order["BuyerInfo"]["BuyerEmail"] for order in stored]
    records.ingest(runtime, _auditor(runtime), "globex", _mapped(stored[:1]))
    pseudonyms = {_pseudonym(runtime, "acme", buyer_email=e) for e in emails}
    assert len(pseudonyms) == len(emails)
    assert _pseudonym(runtime, "globex", buyer_email=emails[0]) not in pseudonyms


def test_an_order_without_an_email_is_named_by_its_buyers_phone(runtime: Runtime) -> None:
    raw = list(synthetic_orders(1, start=900))
    del raw[0]["BuyerInfo"]["BuyerEmail"]
    records.ingest(runtime, _auditor(runtime), "acme", _mapped(raw))
    read_masked(runtime, _auditor(runtime), "acme", raw[0]["AmazonOrderId"])
    phone = raw[0]["ShippingAddress"]["Phone"]
    assert _events(runtime)[-1].buyer == _pseudonym(runtime, "acme", buyer_phone=phone)


def test_a_search_over_many_buyers_names_none(runtime: Runtime,
                                              stored: list[dict[str, Any]]) -> None:
    postal = stored[0]["ShippingAddress"]["PostalCode"]
    sharing = [o for o in stored if o["ShippingAddress"]["PostalCode"] == postal]
    records.ingest(runtime, _auditor(runtime), "acme",
                   _mapped([{**sharing[0], "AmazonOrderId": "902-0000000-0000999",
                             "BuyerInfo": {"BuyerEmail": "someone.else@example.test"}}]))
    found = {o["AmazonOrderId"] for o in _search(runtime, "acme", postal_code=postal)}
    decoys = set(records.list_canaries(runtime, _auditor(runtime), "acme"))
    assert len(found - decoys) == len(sharing) + 1  # (a canary may share the code)
    assert [e for e in _events(runtime) if e.action == "orders:search"][-1].buyer is None


@pytest.mark.parametrize("buyer", [{}, {"buyer_email": ""}, {"buyer_email": "a@b.test",
                                                              "buyer_phone": "+1 555 0100"}])
def test_a_pseudonym_is_asked_for_exactly_one_value(runtime: Runtime,
                                                    stored: list[dict[str, Any]],
                                                    buyer: dict[str, str]) -> None:
    before = len(_events(runtime))
    with pytest.raises(SearchRequestError):
        _pseudonym(runtime, "acme", **buyer)
    assert len(_events(runtime)) == before


def test_a_pseudonym_confirms_nothing_about_the_data(runtime: Runtime,
                                                     stored: list[dict[str, Any]]) -> None:
    """A buyer the tenant never had gets a pseudonym all the same (and an unknown tenant a
    plain not found, as anywhere else)."""
    assert _pseudonym(runtime, "acme", buyer_email="never.bought@example.test").startswith(
        "byr_")
    with pytest.raises(OrderNotFoundError):
        _pseudonym(runtime, "initech", buyer_email="never.bought@example.test")


def test_pseudonym_lookups_take_from_the_search_budget(
        settings: Settings, runtime: Runtime, stored: list[dict[str, Any]]) -> None:
    """Run against a list of emails and matched with the log, lookups would tell whose
    orders were read: like searches, a principal has so many an hour."""
    limited = Runtime(settings.model_copy(update={"search_budget_per_hour": 2}),
                      runtime.store, runtime.keyring, runtime.clock)
    _search(limited, "acme", principal="acc_test", postal_code="10001")
    _pseudonym(limited, "acme", buyer_email="one@example.test")
    with pytest.raises(BudgetExhaustedError):
        _pseudonym(limited, "acme", buyer_email="two@example.test")
