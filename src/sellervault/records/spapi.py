"""Mapping SP-API Orders v0 ``Order`` objects to SellerVault records.

Parsing and validation happen here, once, before anything is stored; the split into a clear
order record and encrypted buyer / shipping-address records follows the registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sellervault.records.registry import BUYER, CLEAR_TOP_LEVEL, PII_TOP_LEVEL, SHIPPING_ADDRESS

MASK = "***"
MAX_ORDERS_PER_REQUEST = 1000
ORDER_ID_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z-]{0,63}$"


class _Open(BaseModel):
    """SP-API objects gain fields over time; unknown ones are kept (and, if PII, encrypted)."""

    model_config = ConfigDict(extra="allow", str_max_length=4096)


class MoneyModel(_Open):
    CurrencyCode: str | None = None
    Amount: str | None = None


class AddressModel(_Open):
    Name: str | None = None
    AddressLine1: str | None = None
    AddressLine2: str | None = None
    AddressLine3: str | None = None
    City: str | None = None
    County: str | None = None
    District: str | None = None
    StateOrRegion: str | None = None
    Municipality: str | None = None
    PostalCode: str | None = None
    CountryCode: str | None = Field(default=None, max_length=2)
    Phone: str | None = None
    AddressType: str | None = None


class TaxInfoModel(_Open):
    CompanyLegalName: str | None = None
    TaxingRegion: str | None = None


class BuyerInfoModel(_Open):
    BuyerEmail: str | None = None
    BuyerName: str | None = None
    BuyerCounty: str | None = None
    BuyerTaxInfo: TaxInfoModel | None = None
    PurchaseOrderNumber: str | None = None


class SpApiOrder(_Open):
    AmazonOrderId: str = Field(pattern=ORDER_ID_PATTERN)
    PurchaseDate: AwareDatetime
    LastUpdateDate: AwareDatetime
    OrderStatus: str = Field(min_length=1, max_length=64)
    MarketplaceId: str | None = Field(default=None, max_length=64)
    OrderTotal: MoneyModel | None = None
    BuyerInfo: BuyerInfoModel | None = None
    ShippingAddress: AddressModel | None = None


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    orders: list[SpApiOrder] = Field(min_length=1, max_length=MAX_ORDERS_PER_REQUEST)


@dataclass(frozen=True, slots=True)
class MappedOrder:
    """One order split by classification, ready to store."""

    amazon_order_id: str
    purchase_date: datetime
    last_update_date: datetime
    order_status: str
    marketplace_id: str | None
    clear: dict[str, Any]
    """Non-PII attributes plus a masked skeleton of every PII record (no PII values)."""
    buyer: dict[str, Any]
    shipping_address: dict[str, Any]
    buyer_email: str | None
    buyer_phone: str | None
    postal_code: str | None


def mask(value: Any) -> Any:
    """The shape of a PII value with every leaf replaced by the mask."""
    if isinstance(value, dict):
        # Text leaves (most of a record) are masked here rather than by a call each.
        return {key: MASK if type(item) is str else mask(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask(item) for item in value]
    return None if value is None else MASK


def normalize_email(value: str) -> str:
    return value.strip().lower()


_NOT_DIGIT = re.compile(r"\D")
_SPACE = re.compile(r"\s+")


def normalize_phone(value: str) -> str:
    return _NOT_DIGIT.sub("", value)


def normalize_postal_code(value: str) -> str:
    return _SPACE.sub("", value).upper()


def map_order(order: SpApiOrder) -> MappedOrder:
    document = order.model_dump(mode="json", exclude_none=True)
    clear: dict[str, Any] = {}
    records: dict[str, dict[str, Any]] = {BUYER.name: {}, SHIPPING_ADDRESS.name: {}}
    for key, value in document.items():
        if key in CLEAR_TOP_LEVEL:
            clear[key] = value
            continue
        # PII, or not yet classified: encrypted either way, only its shape stays in clear.
        target = PII_TOP_LEVEL.get(key, BUYER)
        records[target.name][key] = value
        clear[key] = mask(value)
    buyer = order.BuyerInfo
    address = order.ShippingAddress
    email = buyer.BuyerEmail if buyer else None
    phone = address.Phone if address else None
    postal = address.PostalCode if address else None
    return MappedOrder(
        amazon_order_id=order.AmazonOrderId,
        purchase_date=order.PurchaseDate,
        last_update_date=order.LastUpdateDate,
        order_status=order.OrderStatus,
        marketplace_id=order.MarketplaceId,
        clear=clear,
        buyer=records[BUYER.name],
        shipping_address=records[SHIPPING_ADDRESS.name],
        buyer_email=normalize_email(email) if email else None,
        buyer_phone=normalize_phone(phone) if phone else None,
        postal_code=normalize_postal_code(postal) if postal else None,
    )
