"""The records side of a deletion (``deletion.execution``) and of retention
(``deletion.retention``): which orders a scope holds or whose time is up, removing their
rows or only their PII, and the legal hold that keeps an order from retention. The keys are
the key ring's (``Keyring.destroy_data_keys``, ``destroy_tenant_keys``); this module only
finds and changes rows, in the caller's transaction, so each step stays one transaction.

A legal hold prevails over both: retention re-checks it in the very statement that changes
the rows (``remove_pii_unless_held``, ``delete_unless_held``: a hold committed after the
orders were found keeps its order), and a deletion locks its scope's rows and reads their
holds (``lock_scope``, ``next_batch`` with ``now``) before it destroys a key.

A scope is a tenant's single order (by its marketplace id), a buyer's orders (by the
tenant's blind-index digest of their email: every order of that email, found without
decrypting anything), or the whole tenant (its canaries too)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from sellervault.crypto.keyring import Keyring, UnknownTenantKeyError
from sellervault.crypto.keystore import join_data_key
from sellervault.crypto.pseudonyms import BuyerPseudonyms
from sellervault.records.errors import OrderNotFoundError
from sellervault.records.models import Order
from sellervault.records.service import (
    EMAIL,
    ORDER_AND_KEY_COLUMNS,
    ORDERS,
    decrypt_order,
    masked_view,
)
from sellervault.records.spapi import normalize_email

DELETE_BATCH = 1000
"""Rows deleted per statement: a large scope goes in steps, never one huge statement."""


@dataclass(frozen=True)
class Scope:
    tenant_id: str
    amazon_order_id: str | None = None
    email_digest: bytes | None = None
    """The tenant's blind-index digest of the buyer's email (a buyer scope)."""

    @property
    def whole_tenant(self) -> bool:
        return self.amazon_order_id is None and self.email_digest is None

    def where(self) -> ColumnElement[bool]:
        condition = Order.tenant_id == self.tenant_id
        if self.amazon_order_id is not None:
            condition = condition & (Order.amazon_order_id == self.amazon_order_id)
        if self.email_digest is not None:
            condition = condition & (Order.email_bidx == self.email_digest)
        return condition


@dataclass(frozen=True)
class Buyer:
    digest: bytes
    pseudonym: str


def buyer(session: Session, keyring: Keyring, pseudonyms: BuyerPseudonyms, tenant_id: str,
          email: str) -> Buyer:
    """The buyer with this email in this tenant, as the blind index and the security log
    name them (whether or not the tenant has orders of theirs). A tenant without keys has no
    buyers: ``OrderNotFoundError``."""
    try:
        index = keyring.blind_index(session, tenant_id)
    except UnknownTenantKeyError:
        raise OrderNotFoundError() from None
    digest = index.digest(EMAIL, normalize_email(email))
    return Buyer(digest, pseudonyms.of(tenant_id, EMAIL, digest))


def tenant_held(session: Session, keyring: Keyring, tenant_id: str) -> bool:
    """Whether the tenant has keys (it has ingested, and has not been erased)."""
    try:
        keyring.blind_index(session, tenant_id)
    except UnknownTenantKeyError:
        return False
    return True


def order_exists(session: Session, tenant_id: str, amazon_order_id: str) -> bool:
    return session.scalar(select(func.count()).select_from(Order).where(
        Scope(tenant_id, amazon_order_id).where())) == 1


def data_keys(session: Session, scope: Scope) -> list[str]:
    """The data keys of the scope's orders (one per order)."""
    return list(session.scalars(select(Order.data_key_id).where(scope.where())))


def held(now: datetime) -> ColumnElement[bool]:
    """An order under an active legal hold at ``now``."""
    return Order.held_until > now


def is_held(held_until: datetime | None, now: datetime) -> bool:
    """``held``, of an order's ``held_until`` already read."""
    return held_until is not None and held_until > now


def held_orders(session: Session, scope: Scope, now: datetime) -> list[str]:
    """The marketplace ids of the scope's orders under an active hold (read, not locked: a
    deletion filed is checked again, locked, before anything is destroyed)."""
    return list(session.scalars(select(Order.amazon_order_id).where(scope.where(),
                                                                    held(now))))


@dataclass(frozen=True)
class LockedScope:
    """An order or buyer scope's rows, locked until the transaction ends."""

    data_key_ids: list[str]
    held: list[str]
    """The marketplace ids of those under an active hold."""


def lock_scope(session: Session, scope: Scope, now: datetime) -> LockedScope:
    """Lock the scope's rows (PostgreSQL; SQLite's writers take turns) and read their data
    keys and holds: a hold being placed (``deletion.holds.place`` locks the same row) either
    committed first, and is seen here, or waits for this transaction, and then finds the
    order's key destroyed. Not for a whole tenant (a million rows): its holds are kept in
    step by the tenant's hold lock (``deletion.holds.lock_tenant``)."""
    assert not scope.whole_tenant
    rows = session.execute(select(Order.amazon_order_id, Order.data_key_id, Order.held_until)
                           .where(scope.where()).with_for_update()).all()
    return LockedScope([row.data_key_id for row in rows],
                       [row.amazon_order_id for row in rows if is_held(row.held_until, now)])


def count(session: Session, scope: Scope) -> int:
    return session.scalar(select(func.count()).select_from(Order).where(scope.where())) or 0


def holds_more_than(session: Session, scope: Scope, limit: int) -> bool:
    """Whether the scope holds more than ``limit`` orders, reading at most ``limit + 1``
    index entries (a million-order tenant is not counted to learn it is large)."""
    first = select(Order.id).where(scope.where()).limit(limit + 1).subquery()
    return (session.scalar(select(func.count()).select_from(first)) or 0) > limit


@dataclass(frozen=True)
class OrderRef:
    """An order to erase (a deletion's batch) or whose PII or whole self retention is to
    remove: what its key's destruction and its row's change need."""

    id: str
    tenant_id: str
    data_key_id: str


@dataclass(frozen=True)
class Batch:
    """A deletion's next orders, and where the one after begins (``after``)."""

    orders: list[OrderRef]
    amazon_order_ids: list[str]
    """Their marketplace ids (for their tombstones: ``records.tombstones``)."""
    expires_at: list[datetime]
    """When each would have gone (how long its tombstone lasts)."""
    after: str | None
    """Where a tenant's next batch begins (None for a buyer's or an order's)."""
    held: list[str] = field(default_factory=list)
    """The marketplace ids of those under an active hold (asked with ``now`` only)."""


def next_batch(session: Session, scope: Scope, after: str | None,
               limit: int = DELETE_BATCH, now: datetime | None = None) -> Batch:
    """The scope's next ``limit`` orders, for the caller to destroy their keys and delete
    their rows, a transaction a batch, until none is left.

    A whole tenant's are taken after the marketplace id ``after``, in marketplace id order:
    a walk along the tenant's unique (tenant, marketplace id) index that starts where the
    batch before ended, so no batch reads the entries of rows deleted before it (PostgreSQL
    keeps those until VACUUM: batches that each began at the start of a million-order
    tenant, or a sequential scan, read them all again each time). An order's or a buyer's
    are a few rows found through their own index (the buyer's blind index): any ``limit``
    of them (ordering them by marketplace id could make the planner walk the whole tenant's
    index instead), ``after`` unused.

    ``now`` (an order's or a buyer's): the rows are locked and those held at ``now`` named
    (``Batch.held``), as ``lock_scope`` does: an order of the buyer ingested after the keys
    went may have been put under a hold since."""
    query = select(Order.id, Order.tenant_id, Order.data_key_id, Order.amazon_order_id,
                   Order.expires_at, Order.held_until).where(scope.where())
    if scope.whole_tenant:
        if after is not None:
            query = query.where(Order.amazon_order_id > after)
        query = query.order_by(Order.amazon_order_id)
    elif now is not None:
        query = query.with_for_update()
    rows = session.execute(query.limit(limit)).all()
    return Batch([OrderRef(row.id, row.tenant_id, row.data_key_id) for row in rows],
                 [row.amazon_order_id for row in rows], [row.expires_at for row in rows],
                 (rows[-1].amazon_order_id if rows else after) if scope.whole_tenant else None,
                 [] if now is None else [row.amazon_order_id for row in rows
                                         if is_held(row.held_until, now)])


def decrypted_batch(session: Session, keyring: Keyring, scope: Scope, after: str | None,
                    limit: int) -> list[tuple[str, dict[str, Any]]]:
    """The scope's next ``limit`` orders after the order id ``after``, in id order, each
    as revealed (a return before deletion: ``deletion.returns``); an order whose PII
    retention already removed, as stored. Canaries are left out: nobody's data."""
    query = join_data_key(select(*ORDER_AND_KEY_COLUMNS, Order.pii_removed_at).where(
        scope.where(), Order.is_canary.is_(False)), ORDERS.c.tenant_id, ORDERS.c.data_key_id)
    if after is not None:
        query = query.where(Order.id > after)
    rows = session.execute(query.order_by(Order.id).limit(limit)).all()
    return [(row.id, masked_view(row) if row.pii_removed_at is not None
             else decrypt_order(session, keyring, row)) for row in rows]


def _not_held(now: datetime) -> ColumnElement[bool]:
    return (Order.held_until.is_(None) | (Order.held_until <= now)) & Order.is_canary.is_(False)


def pii_expired(session: Session, now: datetime, limit: int = DELETE_BATCH) -> list[OrderRef]:
    """Orders whose buyer PII is past its expiry, not removed yet, not held (canaries never:
    they are re-dated, and hold no one's data)."""
    rows = session.execute(select(Order.id, Order.tenant_id, Order.data_key_id).where(
        Order.pii_expires_at <= now, Order.pii_removed_at.is_(None), _not_held(now))
        .order_by(Order.pii_expires_at).limit(limit)).all()
    return [OrderRef(*row) for row in rows]


def orders_expired(session: Session, now: datetime,
                   limit: int = DELETE_BATCH) -> list[OrderRef]:
    """Orders past their 18 months, not held."""
    rows = session.execute(select(Order.id, Order.tenant_id, Order.data_key_id).where(
        Order.expires_at <= now, _not_held(now)).order_by(Order.expires_at).limit(limit)).all()
    return [OrderRef(*row) for row in rows]


def remove_pii(session: Session, order_ids: Sequence[str], now: datetime) -> int:
    """Drop the orders' sealed PII records and blind-index entries, held or not (the
    erasure ledger's replay: ``deletion.ledger``); the order data stays."""
    if not order_ids:
        return 0
    result = session.execute(update(Order).where(Order.id.in_(list(order_ids))).values(
        buyer_ct=None, address_ct=None, email_bidx=None, phone_bidx=None, postal_bidx=None,
        pii_removed_at=now))
    return int(result.rowcount)  # type: ignore[attr-defined]


def remove_pii_unless_held(session: Session, order_ids: Sequence[str],
                           now: datetime) -> list[OrderRef]:
    """Drop the sealed PII records and blind-index entries of those of the orders no hold
    keeps now; the order data stays. The hold is asked in the statement itself: under READ
    COMMITTED a hold committed after the orders were found is seen there (the update waits
    for the row the hold locked, then checks it again), so only what this returns may have
    its data key destroyed (the caller's, in the same transaction)."""
    if not order_ids:
        return []
    rows = session.execute(update(Order).where(
        Order.id.in_(list(order_ids)), _not_held(now), Order.pii_removed_at.is_(None)).values(
        buyer_ct=None, address_ct=None, email_bidx=None, phone_bidx=None, postal_bidx=None,
        pii_removed_at=now).returning(Order.id, Order.tenant_id, Order.data_key_id)).all()
    return [OrderRef(*row) for row in rows]


def delete_unless_held(session: Session, order_ids: Sequence[str],
                       now: datetime) -> list[OrderRef]:
    """Delete those of the orders no hold keeps now, the hold asked in the statement itself
    (as ``remove_pii_unless_held``); what was deleted, whose keys the caller destroys."""
    if not order_ids:
        return []
    rows = session.execute(delete(Order).where(Order.id.in_(list(order_ids)), _not_held(now))
                           .returning(Order.id, Order.tenant_id, Order.data_key_id)).all()
    return [OrderRef(*row) for row in rows]


def delete_orders(session: Session, order_ids: Sequence[str]) -> int:
    if not order_ids:
        return 0
    session.execute(delete(Order).where(Order.id.in_(list(order_ids))))
    return len(order_ids)


def delete_tenant_orders(session: Session, tenant_id: str) -> int:
    """Every order of the tenant (an erased tenant's, in a restored database)."""
    result = session.execute(delete(Order).where(Order.tenant_id == tenant_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


def count_held(session: Session, now: datetime) -> int:
    """Orders retention would remove something of now, but a legal hold keeps."""
    return session.scalar(select(func.count()).select_from(Order).where(
        Order.held_until > now, Order.is_canary.is_(False),
        (Order.expires_at <= now) | ((Order.pii_expires_at <= now)
                                      & Order.pii_removed_at.is_(None)))) or 0


def count_without_pii_expiry(session: Session) -> int:
    """Orders holding PII with no delivery or ship date yet (kept until one comes)."""
    return session.scalar(select(func.count()).select_from(Order).where(
        Order.pii_expires_at.is_(None), Order.pii_removed_at.is_(None),
        Order.is_canary.is_(False))) or 0


def lock_order(session: Session, tenant_id: str, amazon_order_id: str) -> bool:
    """Lock the order's row until the transaction ends (PostgreSQL; SQLite's writers take
    turns already): two changes of its hold at once are one after the other, each seeing
    the other's hold. Whether there is such an order."""
    return session.execute(select(Order.id).where(Scope(tenant_id, amazon_order_id).where())
                           .with_for_update()).first() is not None


def erased_on_request(session: Session, keyring: Keyring, tenant_id: str,
                      amazon_order_id: str) -> bool:
    """Whether the order's data key is gone while its PII is not marked removed: a deletion
    request destroyed it and has yet to delete the row (retention destroys the key and
    marks the PII removed in one transaction; its order data is still there to keep)."""
    row = session.execute(select(Order.data_key_id, Order.pii_removed_at).where(
        Scope(tenant_id, amazon_order_id).where())).first()
    return row is not None and row.pii_removed_at is None and keyring.data_keys_held(
        session, tenant_id, [row.data_key_id]) == 0


def hold(session: Session, tenant_id: str, amazon_order_id: str,
         until: datetime | None) -> bool:
    """Set the order's legal hold (None: released); whether there is such an order."""
    result = session.execute(update(Order).where(Scope(tenant_id, amazon_order_id).where())
                             .values(held_until=until))
    return int(result.rowcount) == 1  # type: ignore[attr-defined]
