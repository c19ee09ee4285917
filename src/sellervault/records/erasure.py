"""The records side of a deletion (``deletion.execution``): which orders a scope holds, and
removing their rows. The keys are the key ring's (``Keyring.destroy_data_keys``,
``destroy_tenant_keys``); this module only finds and deletes rows, in the caller's
transaction, so a deletion's steps stay one transaction each.

A scope is a tenant's single order (by its marketplace id), a buyer's orders (by the
tenant's blind-index digest of their email: every order of that email, found without
decrypting anything), or the whole tenant (its canaries too)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from sellervault.crypto.keyring import Keyring, UnknownTenantKeyError
from sellervault.crypto.pseudonyms import BuyerPseudonyms
from sellervault.records.errors import OrderNotFoundError
from sellervault.records.models import Order
from sellervault.records.service import EMAIL
from sellervault.records.spapi import normalize_email

DELETE_BATCH = 1000
"""Rows deleted per statement: a large scope goes in steps, never one huge statement."""


@dataclass(frozen=True)
class Scope:
    tenant_id: str
    amazon_order_id: str | None = None
    email_digest: bytes | None = None
    """The tenant's blind-index digest of the buyer's email (a buyer scope)."""

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


def count(session: Session, scope: Scope) -> int:
    return session.scalar(select(func.count()).select_from(Order).where(scope.where())) or 0


def delete_rows(session: Session, scope: Scope, batch: int = DELETE_BATCH) -> int:
    """Delete up to ``batch`` of the scope's rows (their blind-index entries go with them):
    the number deleted; the caller repeats, a transaction each, until none is left."""
    ids: Sequence[str] = list(session.scalars(select(Order.id).where(scope.where()).limit(batch)))
    if not ids:
        return 0
    session.execute(delete(Order).where(Order.id.in_(ids)))
    return len(ids)
