"""Correcting one PII field of an order (a data subject's right to rectification).

The field's sealed record (the buyer's, or the shipping address) is opened under the order's
data key, changed, and sealed again under the same key; the field's blind index (email,
phone, postal code) is computed anew, and the order's masked view shows the field masked.
All in one transaction with the order's row locked, so two corrections of one order at once
are one after the other (neither loses the other's change). The new value is never logged
or answered: the event names the field and the buyer's pseudonym.

A correction is superseded by a later re-sent order from the marketplace (ingest replaces
the records): the marketplace's data is the source, and should be corrected there too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic_core import from_json
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Outcome, TargetType
from sellervault.crypto.keyring import DataKeyDestroyedError
from sellervault.crypto.keystore import join_data_key
from sellervault.records import erasure
from sellervault.records.errors import (
    CanaryNotCorrectedError,
    CorrectionError,
    CorrectionStateError,
    OrderErasedError,
    OrderNotFoundError,
)
from sellervault.records.models import Order, Restriction
from sellervault.records.registry import BUYER, SHIPPING_ADDRESS, RecordType
from sellervault.records.service import (
    EMAIL,
    ORDERS,
    PHONE,
    POSTAL,
    attributes_json,
    load_pseudonyms,
    lock_canary_toucher,
    record_context,
    record_json,
)
from sellervault.records.spapi import (
    MASK,
    normalize_email,
    normalize_phone,
    normalize_postal_code,
)
from sellervault.runtime import Runtime

MAX_VALUE = 500


@dataclass(frozen=True)
class Correctable:
    """A text field a correction may set: its record, its place, and its blind index."""

    record: RecordType
    ciphertext: str  # the order's column holding the sealed record
    top: str
    leaf: str
    index: tuple[str, str, Callable[[str], str]] | None = None  # kind, column, normaliser


def _buyer(leaf: str, index: tuple[str, str, Callable[[str], str]] | None = None
           ) -> Correctable:
    return Correctable(BUYER, "buyer_ct", "BuyerInfo", leaf, index)


def _address(leaf: str, index: tuple[str, str, Callable[[str], str]] | None = None
             ) -> Correctable:
    return Correctable(SHIPPING_ADDRESS, "address_ct", "ShippingAddress", leaf, index)


CORRECTABLE: dict[str, Correctable] = {
    "BuyerInfo.BuyerEmail": _buyer("BuyerEmail", (EMAIL, "email_bidx", normalize_email)),
    "BuyerInfo.BuyerName": _buyer("BuyerName"),
    "BuyerInfo.BuyerCounty": _buyer("BuyerCounty"),
    "BuyerInfo.PurchaseOrderNumber": _buyer("PurchaseOrderNumber"),
    **{f"ShippingAddress.{leaf}": _address(leaf) for leaf in (
        "Name", "CompanyName", "AddressLine1", "AddressLine2", "AddressLine3", "City",
        "County", "District", "StateOrRegion", "Municipality", "CountryCode")},
    "ShippingAddress.Phone": _address("Phone", (PHONE, "phone_bidx", normalize_phone)),
    "ShippingAddress.PostalCode": _address("PostalCode",
                                           (POSTAL, "postal_bidx", normalize_postal_code)),
}
"""Every field a correction may set: the text fields of the buyer and shipping-address
records (structured ones, tax information and extended fields, are re-sent by the
marketplace instead)."""


def _check_correctable(session: Session, row: Any, spec: Correctable, tenant_id: str,
                       now: datetime) -> None:
    """409 for an order a correction must leave alone: under a legal hold (the held value
    is evidence), a canary (the tripwire stays as planted), or its email while the buyer's
    processing is restricted (the new email would take the order out of the restriction)."""
    if row.is_canary:  # (first: whatever else it is, a probe of a canary trips it)
        raise CanaryNotCorrectedError(row.id)
    if erasure.is_held(row.held_until, now):
        raise CorrectionStateError("the order is under a legal hold")
    if spec.index is not None and spec.index[0] == EMAIL and row.email_bidx is not None \
            and session.scalar(select(Restriction.id).where(
                Restriction.tenant_id == tenant_id, Restriction.buyer_digest == row.email_bidx,
                Restriction.lifted_at.is_(None))) is not None:
        raise CorrectionStateError("the buyer's processing is restricted: lift the "
                                   "restriction first (the email names the buyer)")


@dataclass(frozen=True)
class Corrected:
    tenant_id: str
    amazon_order_id: str
    field: str
    buyer: str | None
    """The buyer's pseudonym after the correction (a new one if the email changed)."""
    corrected_at: datetime


def correct(rt: Runtime, auditor: Auditor, tenant_id: str, amazon_order_id: str,
            field: str, value: str) -> Corrected:
    """Set ``field`` of the order to ``value``. 404: no such order; 410: its PII is erased;
    422: a field that cannot be corrected, or a value that is not one line of text."""
    spec = CORRECTABLE.get(field)
    if spec is None:
        raise CorrectionError("field: not a correctable field (see the documentation's list)")
    value = value.strip()
    if not value or len(value) > MAX_VALUE or not value.isprintable():
        raise CorrectionError(f"value: one line of text, at most {MAX_VALUE} characters")
    if spec.index is not None and spec.index[0] == EMAIL and "@" not in value:
        raise CorrectionError("value: not an email address")
    try:
        return _correct(rt, auditor, tenant_id, amazon_order_id, spec, field, value)
    except CanaryNotCorrectedError as refused:  # a canary probed: it bites, then the 409
        _touched(rt, auditor, tenant_id, refused.order_id)
        raise


def _touched(rt: Runtime, auditor: Auditor, tenant_id: str, order_id: str) -> None:
    """A correction asked of a canary is a touch like a read (``service._touched_canary``):
    its event, which the ``canary-access`` detector alerts on, and the corrector locked. The
    refusal alone would let whoever may correct orders sort the canaries out unnoticed."""
    with rt.store.transaction() as session:
        auditor.record(session, Action.CANARIES_TOUCHED, Outcome.SUCCESS, tenant_id=tenant_id,
                       target_type=TargetType.CANARY, target_id=order_id, count=1)
    lock_canary_toucher(rt, auditor)


def _correct(rt: Runtime, auditor: Auditor, tenant_id: str, amazon_order_id: str,
             spec: Correctable, field: str, value: str) -> Corrected:
    pseudonyms = load_pseudonyms(rt)
    now = rt.clock.now()
    with rt.store.transaction() as session:
        if not erasure.lock_order(session, tenant_id, amazon_order_id):
            raise OrderNotFoundError()
        row = session.execute(join_data_key(
            select(ORDERS.c.id, ORDERS.c.data_key_id, ORDERS.c.attributes,
                   ORDERS.c[spec.ciphertext], ORDERS.c.pii_removed_at, ORDERS.c.email_bidx,
                   ORDERS.c.is_canary, ORDERS.c.held_until).where(
                ORDERS.c.tenant_id == tenant_id, ORDERS.c.amazon_order_id == amazon_order_id),
            ORDERS.c.tenant_id, ORDERS.c.data_key_id)).one()
        if row.pii_removed_at is not None:
            raise OrderErasedError()
        _check_correctable(session, row, spec, tenant_id, now)
        try:
            cipher = rt.keyring.open_data_key(session, tenant_id, row.data_key_id,
                                              row.data_key_kek_version, row.data_key_wrapped)
        except DataKeyDestroyedError:
            raise OrderErasedError() from None
        context = record_context(tenant_id, spec.record.name, row.id, row.data_key_id)
        record: dict[str, Any] = from_json(cipher.open(getattr(row, spec.ciphertext) or b"",
                                                       context))
        record.setdefault(spec.top, {})[spec.leaf] = value
        attributes: dict[str, Any] = from_json(row.attributes)
        attributes.setdefault(spec.top, {})[spec.leaf] = MASK
        changes: dict[str, Any] = {spec.ciphertext: cipher.seal(record_json(record), context),
                                   "attributes": attributes_json(attributes),
                                   "updated_at": now}
        email_digest = row.email_bidx
        if spec.index is not None:
            kind, column, normalise = spec.index
            if not normalise(value):
                raise CorrectionError("value: nothing of it would be found by a search")
            digest = rt.keyring.blind_index(session, tenant_id).digest(kind, normalise(value))
            changes[column] = digest
            if kind == EMAIL:
                email_digest = digest
        session.execute(update(Order).where(Order.id == row.id).values(**changes))
        buyer = None if email_digest is None else pseudonyms.of(tenant_id, EMAIL, email_digest)
        auditor.record(session, Action.ORDERS_CORRECT, Outcome.SUCCESS, tenant_id=tenant_id,
                       target_type=TargetType.ORDER, target_id=row.id, criteria=field,
                       buyer=buyer)
    return Corrected(tenant_id, amazon_order_id, field, buyer, now)

