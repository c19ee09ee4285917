"""Ingest, read, reveal and search orders.

Ingest is all or nothing per call and idempotent per ``AmazonOrderId``: a re-sent order
updates its row (re-encrypted under its existing data key), never duplicates it. Reading
returns the stored masked view and never touches a key; revealing decrypts, and its
security event commits before any PII leaves the service.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pydantic_core import PydanticSerializationError, from_json, to_json
from sqlalchemy import Select, String, Table, and_, bindparam, func, select, true, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sellervault.access import budgets
from sellervault.access.actions import Action
from sellervault.access.budgets import Budget
from sellervault.access.decisions import require_permitted_purpose
from sellervault.accounts import lifecycle
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import SYSTEM_ACTOR, EventFields, Outcome, TargetType
from sellervault.crypto.aead import Cipher, bind
from sellervault.crypto.blind_index import BlindIndex
from sellervault.crypto.errors import TenantKeysBusyError, TenantKeysDestroyedError
from sellervault.crypto.keyring import (
    DataKeyDestroyedError,
    KeyNotCachedError,
    Keyring,
    UnknownTenantKeyError,
)
from sellervault.crypto.keystore import join_data_key
from sellervault.crypto.pseudonyms import PSEUDONYM_KEY, BuyerPseudonyms
from sellervault.records import canaries, lifetimes, tombstones
from sellervault.records.canaries import CANARY_SEED_KEY
from sellervault.records.errors import (
    OrderErasedError,
    OrderNotFoundError,
    OrderRestrictedError,
    SearchRequestError,
)
from sellervault.records.models import Order, Restriction
from sellervault.records.registry import BUYER, SHIPPING_ADDRESS
from sellervault.records.spapi import (
    MappedOrder,
    map_order,
    normalize_email,
    normalize_phone,
    normalize_postal_code,
    validate_order,
)
from sellervault.runtime import Runtime
from sellervault.store.bulk import BulkInsert
from sellervault.store.driver import Db
from sellervault.store.ids import new_ids
from sellervault.store.prepared import Prepared

SEARCH_LIMIT = 100
ORDERS = cast(Table, Order.__table__)
_INSERT_ORDERS = BulkInsert(ORDERS, ORDERS.columns.keys())  # every column, in every row

# Statements built once: no per-call expression building or cache-key generation.
# What reading and revealing an order need (not its dates, counted per read otherwise).
_ORDER_LOOKUP = select(ORDERS.c.id, ORDERS.c.tenant_id, ORDERS.c.data_key_id,
                       ORDERS.c.attributes, ORDERS.c.buyer_ct, ORDERS.c.address_ct,
                       ORDERS.c.is_canary, ORDERS.c.email_bidx, ORDERS.c.phone_bidx).where(
    ORDERS.c.tenant_id == bindparam("tenant_id"),
    ORDERS.c.amazon_order_id == bindparam("amazon_order_id"))
RESTRICTIONS = cast(Table, Restriction.__table__)


def with_restriction(query: Select[Any]) -> Select[Any]:
    """``query`` with the column ``restricted``: whether the order's buyer (by email) is
    under an active restriction of processing (``restrictions``). The partial unique index
    allows one active restriction per buyer, so the join never repeats a row."""
    return query.add_columns(RESTRICTIONS.c.id.is_not(None).label("restricted")).outerjoin(
        RESTRICTIONS, and_(RESTRICTIONS.c.tenant_id == ORDERS.c.tenant_id,
                           RESTRICTIONS.c.buyer_digest == ORDERS.c.email_bidx,
                           RESTRICTIONS.c.lifted_at.is_(None)))


_FIND_ORDER = Prepared(with_restriction(_ORDER_LOOKUP))
_FIND_ORDER_AND_KEY = Prepared(with_restriction(join_data_key(
    _ORDER_LOOKUP, ORDERS.c.tenant_id, ORDERS.c.data_key_id)))
_EXISTING_ORDERS = select(Order.amazon_order_id, Order.id, Order.data_key_id,
                          Order.pii_removed_at).where(
    Order.tenant_id == bindparam("tenant_id"),
    Order.amazon_order_id.in_(bindparam("amazon_order_ids", expanding=True)),
)
# The same lookup for PostgreSQL, written so that each id is one probe of the unique
# (tenant_id, amazon_order_id) index whatever the planner believes about the tenant. With the
# IN list, a tenant the statistics do not know yet (a new tenant, a table not yet analysed)
# is estimated at a handful of rows, so PostgreSQL scans every row of the tenant through a
# tenant_id-prefixed index and tests each against the whole list: every batch of a large
# import then costs time proportional to the tenant's size. (LIMIT 1 keeps the lateral
# subquery from being flattened back into that plan; the pair is unique, so it drops nothing.)
_WANTED = (func.unnest(bindparam("amazon_order_ids", type_=postgresql.ARRAY(String)))
           .table_valued("amazon_order_id").render_derived(name="wanted"))
_MATCH = (select(Order.id, Order.data_key_id, Order.pii_removed_at)
          .where(Order.tenant_id == bindparam("tenant_id"),
                 Order.amazon_order_id == _WANTED.c.amazon_order_id)
          .limit(1).lateral("found"))
_EXISTING_ORDERS_PG = (select(_WANTED.c.amazon_order_id, _MATCH.c.id, _MATCH.c.data_key_id,
                               _MATCH.c.pii_removed_at)
                       .select_from(_WANTED.join(_MATCH, true())))
EMAIL, PHONE, POSTAL = "buyer-email", "buyer-phone", "postal-code"


@dataclass(frozen=True, slots=True)
class IngestResult:
    inserted: int
    updated: int
    withheld: int = 0
    """Orders deleted on request and sent again (a marketplace re-sync): not stored
    (``records.tombstones``)."""

    @property
    def ingested(self) -> int:
        return self.inserted + self.updated


def record_context(tenant_id: str, record_type: str, order_id: str, data_key_id: str) -> bytes:
    return bind("record", tenant_id, record_type, order_id, data_key_id)


# The records and the attributes are compact JSON. pydantic-core's serializer (Rust) writes
# it about three times faster than the json module for an order's dicts, and the same bytes
# for the JSON values ingest produces (they come from ``model_dump(mode="json")``), except
# that a float below 1e-4 is written ``1e-7`` where json writes ``1e-07`` (the same number).
# The json module stays the reference: anything pydantic-core refuses (a lone surrogate)
# goes through it, so it fails or succeeds exactly as before.
_RECORD_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_ATTRIBUTES_JSON = json.JSONEncoder(separators=(",", ":"))


def record_json(value: Any) -> bytes:
    """A record as UTF-8 JSON (ensure_ascii=False), to be sealed."""
    try:
        return to_json(value)
    except PydanticSerializationError:
        return _RECORD_JSON.encode(value).encode()


def attributes_json(value: dict[str, Any]) -> str:
    """The clear attributes as ASCII JSON (non-ASCII escaped, as json.dumps does by default)."""
    try:
        encoded = to_json(value)
    except PydanticSerializationError:
        return _ATTRIBUTES_JSON.encode(value)
    # pydantic-core writes non-ASCII as UTF-8; the json module escapes it. Keep the escapes.
    return encoded.decode("ascii") if encoded.isascii() else _ATTRIBUTES_JSON.encode(value)


def _row_values(tenant_id: str, order_id: str, data_key_id: str, cipher: Cipher,
                index: BlindIndex, order: MappedOrder, is_canary: bool) -> dict[str, Any]:
    return {
        "id": order_id,
        "tenant_id": tenant_id,
        "amazon_order_id": order.amazon_order_id,
        "data_key_id": data_key_id,
        **_order_data(order),
        "buyer_ct": cipher.seal(record_json(order.buyer),
                                record_context(tenant_id, BUYER.name, order_id, data_key_id)),
        "address_ct": cipher.seal(
            record_json(order.shipping_address),
            record_context(tenant_id, SHIPPING_ADDRESS.name, order_id, data_key_id),
        ),
        "email_bidx": index.digest(EMAIL, order.buyer_email) if order.buyer_email else None,
        "phone_bidx": index.digest(PHONE, order.buyer_phone) if order.buyer_phone else None,
        "postal_bidx": index.digest(POSTAL, order.postal_code) if order.postal_code else None,
        "is_canary": is_canary,
        "pii_expires_at": lifetimes.pii_expiry(order.clear),
        "pii_removed_at": None,
        "held_until": None,
    }


_KEPT_ON_UPDATE = ("is_canary", "pii_removed_at", "held_until")
"""What a re-sent order never changes: its canary flag, its retention and legal hold."""


def store_orders(session: Session, keyring: Keyring, tenant_id: str,
                 orders: Sequence[MappedOrder], now: datetime, *,
                 canary: bool = False, tenant_ready: bool = False) -> IngestResult:
    """The storage step of ingest, inside the caller's transaction, at ``now``
    (``tenant_ready``: the caller has called ``ensure_tenant`` in it already)."""
    latest = {order.amazon_order_id: order for order in orders}  # a re-sent id: last wins
    if not tenant_ready:
        keyring.ensure_tenant(session, tenant_id)
    existing: dict[str, tuple[str, str]] = {}
    past_retention: dict[str, str] = {}  # re-sent after retention erased their PII
    for amazon_id, order_id, data_key_id, pii_removed_at in session.execute(
            _EXISTING_ORDERS_PG if session.get_bind().dialect.name == "postgresql"
            else _EXISTING_ORDERS,
            {"tenant_id": tenant_id, "amazon_order_ids": list(latest)}):
        if pii_removed_at is None:
            existing[amazon_id] = (order_id, data_key_id)
        else:
            past_retention[amazon_id] = order_id
    index = keyring.blind_index(session, tenant_id)
    fresh = [order for amazon_id, order in latest.items()
             if amazon_id not in existing and amazon_id not in past_retention]
    gone: set[str] = set() if canary else tombstones.withheld(
        session, index, tenant_id, [order.amazon_order_id for order in fresh])
    if gone:  # deleted on request: a re-sync does not bring them back
        fresh = [order for order in fresh if order.amazon_order_id not in gone]
    if fresh:
        data_keys = keyring.new_data_keys(session, tenant_id, len(fresh))
        order_ids = new_ids(len(fresh), now)  # time-ordered: the primary-key index appends

        def rows() -> Iterator[dict[str, Any]]:
            for order, order_id, data_key in zip(fresh, order_ids, data_keys, strict=True):
                values = _row_values(tenant_id, order_id, data_key.id, data_key.cipher, index,
                                     order, canary)
                values["created_at"] = values["updated_at"] = now
                yield values

        # One bulk insert (COPY on PostgreSQL), each row sealed while the ones before it are
        # being stored; no ORM or Core per-row bookkeeping.
        _INSERT_ORDERS.execute(session, rows())
    if existing:
        try:
            ciphers = keyring.data_keys(session, tenant_id, [dk for _, dk in existing.values()])
        except DataKeyDestroyedError:
            raise OrderErasedError() from None
        updates = []
        for amazon_id, (order_id, data_key_id) in existing.items():
            values = _row_values(tenant_id, order_id, data_key_id, ciphers[data_key_id], index,
                                 latest[amazon_id], canary)
            for kept in _KEPT_ON_UPDATE:
                del values[kept]
            values["updated_at"] = now
            updates.append(values)
        session.execute(update(Order), updates)  # ORM bulk UPDATE by primary key
    if past_retention:  # their order data updated; the PII sent again is dropped, never
        # stored: its time was up (retention erased it and destroyed its key)
        session.execute(update(Order), [
            {"id": order_id, **_order_data(latest[amazon_id]), "updated_at": now}
            for amazon_id, order_id in past_retention.items()])
    return IngestResult(inserted=len(fresh), updated=len(existing) + len(past_retention),
                        withheld=len(gone))


def _order_data(order: MappedOrder) -> dict[str, Any]:
    """An order's columns that hold no PII (its masked view holds only the PII's shape)."""
    return {"purchase_date": order.purchase_date, "last_update_date": order.last_update_date,
            "order_status": order.order_status, "marketplace_id": order.marketplace_id,
            "attributes": attributes_json(order.clear),
            "expires_at": lifetimes.order_expiry(order.purchase_date)}


def ingest(rt: Runtime, auditor: Auditor, tenant_id: str,
           orders: Sequence[MappedOrder]) -> IngestResult:
    """Store the orders; a tenant's first ingest also makes its keys (a
    ``keys:create-tenant`` event) and seeds its canaries, modelled on these orders, in the
    same transaction (``records.canaries``): the caller's answer counts only its own orders."""
    seed_key = _system_key(rt, CANARY_SEED_KEY)
    with rt.store.transaction() as session:
        now = rt.clock.now()
        first = rt.keyring.ensure_tenant(session, tenant_id)
        result = store_orders(session, rt.keyring, tenant_id, orders, now, tenant_ready=True)
        auditor.record(session, Action.ORDERS_INGEST, Outcome.SUCCESS, tenant_id=tenant_id,
                       target_type=TargetType.ORDER, count=result.ingested)
        if result.withheld:  # the evidence that a deletion held against a re-sync, and
            # who sent the orders again
            auditor.record(session, Action.ORDERS_WITHHOLD, Outcome.SUCCESS,
                           tenant_id=tenant_id, target_type=TargetType.ORDER,
                           count=result.withheld)
        if first:  # the tenant's keys were made just now: an event of their own
            Auditor(rt.audit, SYSTEM_ACTOR).record(
                session, Action.KEYS_CREATE_TENANT, Outcome.SUCCESS, tenant_id=tenant_id,
                target_type=TargetType.TENANT_KEY, target_id="1")
            seed = canaries.tenant_seed(seed_key, tenant_id)
            models = [canaries.model_of(order) for order in orders]
            written = _seed_canaries(rt, session, seed, tenant_id, now, models, 0)
            _record_refresh(rt, session, tenant_id, written)
    return result


def _seed_canaries(rt: Runtime, session: Session, seed: bytes, tenant_id: str, now: datetime,
                   models: Sequence[dict[str, Any]], first: int) -> int:
    """Canaries ``first`` up to the configured number, each modelled on one of ``models``
    (``canaries.choose_model``); the number written. None while no model has a buyer or an
    address (a first ingest of pending orders): a made-up stock order (a US order on
    Amazon.com) would stand out among, say, a German seller's orders, so the canaries wait
    for the daily refresh after an order with a buyer arrives."""
    chosen = [(number, canaries.choose_model(seed, number, models))
              for number in range(first, rt.settings.canaries_per_tenant)]
    orders = [map_order(validate_order(canaries.canary_order(seed, number, now, model)))
              for number, model in chosen if model is not None]
    if not orders:
        return 0
    return store_orders(session, rt.keyring, tenant_id, orders, now, canary=True,
                        tenant_ready=True).ingested


def _record_refresh(rt: Runtime, session: Session, tenant_id: str, written: int) -> None:
    Auditor(rt.audit, SYSTEM_ACTOR).record(
        session, Action.CANARIES_REFRESH, Outcome.SUCCESS, tenant_id=tenant_id,
        target_type=TargetType.CANARY, count=written)


_TENANTS_WITH_ORDERS = select(Order.tenant_id).distinct().order_by(Order.tenant_id)
_CANARY_DATES = select(ORDERS.c.id, ORDERS.c.amazon_order_id, ORDERS.c.attributes).where(
    ORDERS.c.tenant_id == bindparam("tenant_id"), ORDERS.c.is_canary.is_(True))
MODEL_CANDIDATES = 20
"""How many of a tenant's newest orders a refresh that seeds canaries models them on."""
ORDER_AND_KEY_COLUMNS = _ORDER_LOOKUP.selected_columns
"""What ``decrypt_order`` needs of an order, besides its wrapped key (``join_data_key``)."""
_MODELS = join_data_key(
    with_restriction(select(*ORDER_AND_KEY_COLUMNS)).where(
        ORDERS.c.tenant_id == bindparam("tenant_id"), ORDERS.c.is_canary.is_(False),
        ORDERS.c.buyer_ct.is_not(None), RESTRICTIONS.c.id.is_(None))  # (not a restricted
    .order_by(ORDERS.c.purchase_date.desc()).limit(MODEL_CANDIDATES),  # buyer's orders)
    ORDERS.c.tenant_id, ORDERS.c.data_key_id)


def refresh_canaries(rt: Runtime) -> int:
    """The ``canaries-refresh`` job: every tenant's canaries dated back from now again, their
    dates alone moved (``canaries.redate``), and the missing ones seeded (a tenant created
    before canaries were, or a larger ``canaries_per_tenant``), modelled on its newest
    orders. One short transaction per tenant; an erased tenant is left alone. The canaries
    written."""
    seed_key = _system_key(rt, CANARY_SEED_KEY)
    with rt.store.transaction() as session:
        tenants = list(session.scalars(_TENANTS_WITH_ORDERS))
    written = 0
    for tenant_id in tenants:
        try:
            with rt.store.transaction() as session:
                rt.keyring.ensure_tenant(session, tenant_id)
                now, seed = rt.clock.now(), canaries.tenant_seed(seed_key, tenant_id)
                moved = _redate_canaries(session, seed, tenant_id, now)
                seeded = 0
                if moved < rt.settings.canaries_per_tenant:
                    seeded = _seed_canaries(rt, session, seed, tenant_id, now,
                                            _stored_models(rt, session, tenant_id), moved)
                _record_refresh(rt, session, tenant_id, moved + seeded)
                written += moved + seeded
        except (TenantKeysDestroyedError, TenantKeysBusyError, OrderErasedError):
            continue  # erased, or rotating its key now (tomorrow's run), or a canary erased
    return written


def _redate_canaries(session: Session, seed: bytes, tenant_id: str, now: datetime) -> int:
    """Every canary of the tenant dated ``canary_age`` before ``now``: its date columns and
    the dates in its clear attributes; its sealed records are not touched."""
    updates = []
    for order_id, amazon_order_id, attributes in session.execute(
            _CANARY_DATES, {"tenant_id": tenant_id}).all():
        purchased = (now - canaries.canary_age(seed, amazon_order_id)).replace(microsecond=0)
        view = canaries.redate(from_json(attributes), purchased, now)
        updates.append({"id": order_id, "attributes": attributes_json(view),
                        "purchase_date": purchased,
                        "last_update_date": canaries.parse_date(view["LastUpdateDate"]),
                        "updated_at": now})
    if updates:
        session.execute(update(Order), updates)  # ORM bulk UPDATE by primary key
    return len(updates)


def _stored_models(rt: Runtime, session: Session, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's newest orders with a buyer, decrypted in memory to model canaries on
    (an erased one, its data key destroyed, is passed over)."""
    return [decrypt_order(session, rt.keyring, row)
            for row in session.execute(_MODELS, {"tenant_id": tenant_id}).all()
            if row.data_key_wrapped is not None]


async def _find(rt: Runtime, tenant_id: str, amazon_order_id: str, *,
                with_key: bool = False) -> Any:
    """The order's row (its columns by name), one prepared statement; ``with_key`` adds its
    wrapped data key (``join_data_key``)."""
    async with rt.store.connect() as db:
        return _found(await db.all(_FIND_ORDER_AND_KEY if with_key else _FIND_ORDER,
                                   {"tenant_id": tenant_id, "amazon_order_id": amazon_order_id}))


def _order_event(row: Any, buyer: str | None, purpose: str | None = None) -> EventFields:
    """The event fields of reading one order (masked, or revealed for ``purpose``)."""
    return {"tenant_id": row.tenant_id, "target_type": TargetType.ORDER, "target_id": row.id,
            "purpose": purpose, "count": 1, "buyer": buyer}


def buyer_of(pseudonyms: BuyerPseudonyms, row: Any) -> str | None:
    """The pseudonym of an order's buyer (``crypto.pseudonyms``): from the blind-index digest
    of their email, else of their phone; None for an order that has neither."""
    if row.email_bidx is not None:
        return pseudonyms.of(row.tenant_id, EMAIL, row.email_bidx)
    if row.phone_bidx is not None:
        return pseudonyms.of(row.tenant_id, PHONE, row.phone_bidx)
    return None


def load_pseudonyms(rt: Runtime) -> BuyerPseudonyms:
    """The buyer pseudonyms, their key read (or made, on first use) outside the caller's
    transaction (``_system_key``)."""
    try:
        return rt.keyring.buyer_pseudonyms(None)
    except KeyNotCachedError:
        _system_key(rt, PSEUDONYM_KEY)
        with rt.store.read() as db:
            return rt.keyring.buyer_pseudonyms(db)


def _system_key(rt: Runtime, name: str) -> bytes:
    """A system key, read (or made, on first use) in a transaction of its own: outside the
    caller's, so that two processes making it at the same moment cost the loser a second
    read, not its request."""
    key = rt.keyring.cached_system_key(name)
    if key is not None:
        return key
    try:
        with rt.store.transaction() as session:
            return rt.keyring.system_key(session, name)
    except IntegrityError:  # made by another process meanwhile: read theirs
        with rt.store.transaction() as session:
            return rt.keyring.system_key(session, name)


async def _buyer(rt: Runtime, row: Any) -> str | None:
    try:
        pseudonyms = rt.keyring.buyer_pseudonyms(None)
    except KeyNotCachedError:  # the first use in this process
        pseudonyms = await rt.store.offload(load_pseudonyms, rt)
    return buyer_of(pseudonyms, row)


def _found(rows: list[Any]) -> Any:
    if not rows:
        raise OrderNotFoundError()
    return rows[0]


async def _unless_restricted(rt: Runtime, auditor: Auditor, row: Any) -> None:
    """451 for an order whose buyer's processing is restricted (the request's own event
    records the refusal with ``processing_restricted``). A canary's tripwire goes off
    first: restricting a canary's made-up email does not silence it."""
    if row.restricted:
        await _touched_canary(rt, auditor, row, await _buyer(rt, row))
        raise OrderRestrictedError()


def masked_view(row: Any) -> dict[str, Any]:
    view: dict[str, Any] = from_json(row.attributes)
    return view


async def read_masked(rt: Runtime, auditor: Auditor, tenant_id: str,
                      amazon_order_id: str) -> dict[str, Any]:
    """The order with every PII value masked; no key is unwrapped."""
    row = await _find(rt, tenant_id, amazon_order_id)
    await _unless_restricted(rt, auditor, row)
    view = masked_view(row)  # before the event: a read that fails is not logged a success
    buyer = await _buyer(rt, row)
    await auditor.append(rt.store, Action.ORDERS_READ, Outcome.SUCCESS,
                         **_order_event(row, buyer))
    await _touched_canary(rt, auditor, row, buyer)
    return view


def decrypt_order(db: Db | None, keyring: Keyring, row: Any) -> dict[str, Any]:
    """The order as revealed: its stored view with the buyer and shipping address opened
    under its data key (``row``: ``_ORDER_LOOKUP``'s columns and ``join_data_key``'s)."""
    try:
        cipher = keyring.open_data_key(db, row.tenant_id, row.data_key_id,
                                       row.data_key_kek_version, row.data_key_wrapped)
        buyer = from_json(cipher.open(
            row.buyer_ct or b"", record_context(row.tenant_id, BUYER.name, row.id,
                                                 row.data_key_id)))
        address = from_json(cipher.open(
            row.address_ct or b"", record_context(row.tenant_id, SHIPPING_ADDRESS.name, row.id,
                                                   row.data_key_id)))
    except DataKeyDestroyedError:
        raise OrderErasedError() from None
    view = masked_view(row)
    view.update(buyer)
    view.update(address)
    return view


async def reveal(rt: Runtime, auditor: Auditor, tenant_id: str, amazon_order_id: str,
                 purpose: str) -> dict[str, Any]:
    """The order with PII in clear, for a permitted purpose; the event commits first.

    The lookup and the event are two atomic steps, not one transaction: a reveal changes
    nothing, and the event records the reveal that happened (if the order was deleted in
    between, it is still true that its PII was read while it existed)."""
    require_permitted_purpose(purpose)
    row = await _find(rt, tenant_id, amazon_order_id, with_key=True)
    await _unless_restricted(rt, auditor, row)
    try:  # the tenant key cached: no database
        view = decrypt_order(None, rt.keyring, row)
    except KeyNotCachedError:  # its first use in this process (or just evicted): read it
        view = await rt.store.offload(_decrypt_reading_keys, rt, row)
    buyer = await _buyer(rt, row)
    await auditor.append(rt.store, Action.ORDERS_REVEAL, Outcome.SUCCESS,
                         **_order_event(row, buyer, purpose))
    await _touched_canary(rt, auditor, row, buyer)
    return view  # only once the event is committed


async def _touched_canary(rt: Runtime, auditor: Auditor, row: Any, buyer: str | None) -> None:
    """A canary read or revealed: a ``canaries:touched`` event of its own, which the
    ``canary-access`` detector alerts on (``monitoring.detectors``), and the reader locked
    before its answer leaves (``lock_canary_toucher``). The answer is the same as for any
    order: nothing in it tells a reader it touched one."""
    if row.is_canary:
        await auditor.append(rt.store, Action.CANARIES_TOUCHED, Outcome.SUCCESS,
                             tenant_id=row.tenant_id, target_type=TargetType.CANARY,
                             target_id=row.id, count=1, buyer=buyer)
        await rt.store.offload(lock_canary_toucher, rt, auditor)


def lock_canary_toucher(rt: Runtime, auditor: Auditor) -> None:
    """Disable the person or service that touched a canary (``SELLERVAULT_AUTO_LOCK``, on by
    default) in the request itself, before it is answered: its next request is refused on
    every connection and in every process, however fast it follows. Left to the detector
    alone (its own thread, after the commit), requests sent meanwhile were still served. The
    detector locks too (a no-op by then) and raises the alert."""
    actor_id = auditor.actor.actor_id
    if actor_id is not None and rt.settings.auto_lock:
        lifecycle.disable_for_canary(rt, actor_id)


def _decrypt_reading_keys(rt: Runtime, row: Any) -> dict[str, Any]:
    with rt.store.read() as db:
        return decrypt_order(db, rt.keyring, row)


SEARCH_BUDGET = "orders-search"
SEARCH_WINDOW_SECONDS = 3600


def search_criteria(*, buyer_email: str | None = None, buyer_phone: str | None = None,
                    postal_code: str | None = None) -> str:
    """The kinds of criteria given (``buyer-email+postal-code``): what a search's event
    records, never the values. Empty when none is given."""
    given = [(EMAIL, buyer_email), (PHONE, buyer_phone), (POSTAL, postal_code)]
    return "+".join(kind for kind, value in given if value is not None)


@dataclass(frozen=True, slots=True)
class SearchResult:
    orders: list[dict[str, Any]]
    """The hits, masked."""
    restricted: int
    """Hits withheld: their buyer's processing is restricted (``restrictions``)."""


def search(rt: Runtime, auditor: Auditor, principal_id: str, tenant_id: str, *, purpose: str,
           buyer_email: str | None = None, buyer_phone: str | None = None,
           postal_code: str | None = None) -> SearchResult:
    """Orders matching every given criterion exactly (after normalisation), masked; a hit
    whose buyer's processing is restricted is withheld (counted, never shown).

    Every criterion is PII, and a search confirms or maps it (one ZIP code at a time, every
    order's postal code), so a search is a PII operation: the caller states a permitted
    purpose (decided before this is called, and checked again here) and each principal has a
    budget of searches per hour (``access.budgets``); the event records the purpose and the
    kinds of criteria, never their values."""
    require_permitted_purpose(purpose)
    criteria = [(EMAIL, Order.email_bidx, buyer_email, normalize_email),
                (PHONE, Order.phone_bidx, buyer_phone, normalize_phone),
                (POSTAL, Order.postal_bidx, postal_code, normalize_postal_code)]
    given = [(kind, column, norm(value)) for kind, column, value, norm in criteria
             if value is not None]
    if not given or any(not value for _, _, value in given):
        raise SearchRequestError("give buyer_email, buyer_phone or postal_code")
    budget = Budget(SEARCH_BUDGET, rt.settings.search_budget_per_hour, SEARCH_WINDOW_SECONDS)
    asked = search_criteria(buyer_email=buyer_email, buyer_phone=buyer_phone,
                            postal_code=postal_code)
    pseudonyms = load_pseudonyms(rt)
    with rt.store.transaction() as session:
        budgets.take(session, budget, principal_id, rt.clock.now())
        try:
            index = rt.keyring.blind_index(session, tenant_id)
        except UnknownTenantKeyError:
            index = None  # a tenant with no keys has no orders: an empty result
        rows: list[Order] = []
        withheld = 0
        if index is not None:
            query = with_restriction(select(Order)).where(Order.tenant_id == tenant_id)
            for kind, column, value in given:
                query = query.where(column == index.digest(kind, value))
            found = session.execute(query.order_by(Order.purchase_date).limit(SEARCH_LIMIT))
            for row, restricted in found:
                if restricted:
                    withheld += 1
                else:
                    rows.append(row)
        buyers = {buyer_of(pseudonyms, row) for row in rows}
        auditor.record(session, Action.ORDERS_SEARCH, Outcome.SUCCESS, tenant_id=tenant_id,
                       target_type=TargetType.ORDER, count=len(rows), purpose=purpose,
                       criteria=asked,
                       buyer=buyers.pop() if len(buyers) == 1 else None)
        canaries = [row for row in rows if row.is_canary]
        if canaries:  # a search hit on a canary (see _touched_canary); the criteria say
            # whether the search named the canary's buyer or only its ZIP code, which an
            # honest search for a real buyer shares (monitoring.detectors: no lock then)
            auditor.record(session, Action.CANARIES_TOUCHED, Outcome.SUCCESS,
                           tenant_id=tenant_id, target_type=TargetType.CANARY,
                           target_id=canaries[0].id, count=len(canaries),
                           buyer=buyer_of(pseudonyms, canaries[0]),
                           criteria=asked)
        result = SearchResult([masked_view(row) for row in rows], withheld)
    if canaries and asked != POSTAL:
        lock_canary_toucher(rt, auditor)  # (a ZIP code alone: alerted on, not locked)
    return result


def buyer_pseudonym(rt: Runtime, auditor: Auditor, principal_id: str, tenant_id: str, *,
                    buyer_email: str | None = None, buyer_phone: str | None = None) -> str:
    """The pseudonym the security log gives the buyer with this email (or phone) in this
    tenant, for an investigator to find their events (``GET /audit/events?buyer=``).

    The answer is the same whether or not the tenant has such a buyer. Matched against the
    log's pseudonyms, though, it tells whether that person's orders were read: each lookup
    takes one search from the principal's hourly budget (``access.budgets``). By phone, it
    names the buyer of orders that have no email (an order with both is named by its email).
    The event names the pseudonym asked for (who looked for whom), never the value given."""
    given = [(kind, norm(value)) for kind, value, norm in
             ((EMAIL, buyer_email, normalize_email), (PHONE, buyer_phone, normalize_phone))
             if value is not None]
    if len(given) != 1 or not given[0][1]:
        raise SearchRequestError("give one of buyer_email or buyer_phone")
    (kind, value), = given
    pseudonyms = load_pseudonyms(rt)
    budget = Budget(SEARCH_BUDGET, rt.settings.search_budget_per_hour, SEARCH_WINDOW_SECONDS)
    with rt.store.transaction() as session:
        # The same budget as a search: run against a list of emails and the log's pseudonyms,
        # lookups would tell which people are buyers whose data was read.
        budgets.take(session, budget, principal_id, rt.clock.now())
        try:
            index = rt.keyring.blind_index(session, tenant_id)
        except UnknownTenantKeyError:
            raise OrderNotFoundError() from None  # a tenant with no keys has no buyers
        buyer = pseudonyms.of(tenant_id, kind, index.digest(kind, value))
        auditor.record(session, Action.BUYERS_PSEUDONYM, Outcome.SUCCESS, tenant_id=tenant_id,
                       criteria=kind, buyer=buyer)
    return buyer


def list_canaries(rt: Runtime, auditor: Auditor, tenant_id: str) -> list[str]:
    with rt.store.transaction() as session:
        ids = list(session.scalars(select(Order.amazon_order_id).where(
            Order.tenant_id == tenant_id, Order.is_canary.is_(True)).order_by(
            Order.amazon_order_id)))
        auditor.record(session, Action.CANARIES_LIST, Outcome.SUCCESS, tenant_id=tenant_id,
                       target_type=TargetType.ORDER, count=len(ids))
    return ids


def seed_canaries(rt: Runtime, auditor: Auditor, tenant_id: str,
                  orders: Sequence[MappedOrder]) -> IngestResult:
    """Store honeytoken orders: indistinguishable from real ones except by this flag."""
    with rt.store.transaction() as session:
        result = store_orders(session, rt.keyring, tenant_id, orders, rt.clock.now(),
                              canary=True)
        auditor.record(session, Action.ORDERS_INGEST, Outcome.SUCCESS, tenant_id=tenant_id,
                       target_type=TargetType.CANARY, count=result.ingested)
    return result
