"""Mapping SP-API Orders v0 ``Order`` objects to SellerVault records.

Parsing and validation happen here, once, before anything is stored; the split into a clear
order record and encrypted buyer / shipping-address records follows the registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, NotRequired

from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field, TypeAdapter, with_config
from pydantic_core import to_jsonable_python
from typing_extensions import TypedDict  # (pydantic needs this one on Python < 3.12)

from sellervault.records.registry import BUYER, CLEAR_TOP_LEVEL, PII_TOP_LEVEL, SHIPPING_ADDRESS

MASK = "***"
MAX_ORDERS_PER_REQUEST = 1000
ORDER_ID_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z-]{0,63}$"


# The SP-API objects are validated into plain dicts (TypedDicts): no model instances to build
# and dump again, about three times less work per order than BaseModels (ingest's shared
# parse). Fields not declared here are kept as they come (SP-API objects gain fields over
# time), and stored encrypted if they are PII or not yet classified.
_OPEN = ConfigDict(extra="allow", str_max_length=4096)


def _storable_in_utc(value: datetime) -> datetime:
    """An order's dates are stored in UTC: ``0001-01-01T00:00:00+00:01`` is a valid date-time
    that has no UTC form (it was a 500 at ingest). Kept as sent; only checked."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the date-time has no UTC form within years 1..9999") from None
    return value


OrderDateTime = Annotated[AwareDatetime, AfterValidator(_storable_in_utc)]


@with_config(_OPEN)
class Money(TypedDict, total=False):
    CurrencyCode: str | None
    Amount: str | None


@with_config(_OPEN)
class Address(TypedDict, total=False):
    Name: str | None
    AddressLine1: str | None
    AddressLine2: str | None
    AddressLine3: str | None
    City: str | None
    County: str | None
    District: str | None
    StateOrRegion: str | None
    Municipality: str | None
    PostalCode: str | None
    CountryCode: Annotated[str | None, Field(max_length=2)]
    Phone: str | None
    AddressType: str | None


@with_config(_OPEN)
class TaxInfo(TypedDict, total=False):
    CompanyLegalName: str | None
    TaxingRegion: str | None


@with_config(_OPEN)
class BuyerInfo(TypedDict, total=False):
    BuyerEmail: str | None
    BuyerName: str | None
    BuyerCounty: str | None
    BuyerTaxInfo: TaxInfo | None
    PurchaseOrderNumber: str | None


@with_config(_OPEN)
class SpApiOrder(TypedDict):
    AmazonOrderId: Annotated[str, Field(pattern=ORDER_ID_PATTERN)]
    PurchaseDate: OrderDateTime
    LastUpdateDate: OrderDateTime
    OrderStatus: Annotated[str, Field(min_length=1, max_length=64)]
    MarketplaceId: NotRequired[Annotated[str | None, Field(max_length=64)]]
    OrderTotal: NotRequired[Money | None]
    BuyerInfo: NotRequired[BuyerInfo | None]
    ShippingAddress: NotRequired[Address | None]


@with_config(ConfigDict(extra="forbid"))
class IngestRequest(TypedDict):
    orders: Annotated[list[SpApiOrder], Field(min_length=1, max_length=MAX_ORDERS_PER_REQUEST)]


_REQUEST: TypeAdapter[IngestRequest] = TypeAdapter(IngestRequest)
_ORDER: TypeAdapter[SpApiOrder] = TypeAdapter(SpApiOrder)


def parse_request(body: bytes | str) -> list[SpApiOrder]:
    """The orders of an ingest request body (JSON); pydantic's ValidationError names the
    path of every bad field."""
    return _REQUEST.validate_json(body)["orders"]


def validate_request(request: Any) -> list[SpApiOrder]:
    """``parse_request`` for a request already decoded from JSON."""
    return _REQUEST.validate_python(request)["orders"]


def validate_order(order: Any) -> SpApiOrder:
    """One order, decoded from JSON (a dict), validated."""
    return _ORDER.validate_python(order)


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


# Declared sub-objects: like the declared fields of the order, a None inside them means
# "absent" and is dropped (what else a field holds is stored exactly as it came).
_DECLARED_OBJECTS = frozenset({"OrderTotal", "BuyerInfo", "ShippingAddress"})


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def _document_value(key: str, value: Any) -> Any:
    """A top-level value as the order's JSON document holds it."""
    if type(value) is datetime:  # PurchaseDate, LastUpdateDate: as ISO 8601 text
        return to_jsonable_python(value)
    if key in _DECLARED_OBJECTS:
        value = _present(value)
        tax = value.get("BuyerTaxInfo")
        if tax is not None and key == "BuyerInfo":
            value["BuyerTaxInfo"] = _present(tax)
    return value


def map_order(order: SpApiOrder) -> MappedOrder:
    """Split a validated order: clear attributes (PII masked), buyer and shipping-address
    records (encrypted when stored), and the normalised blind-index inputs."""
    clear: dict[str, Any] = {}
    records: dict[str, dict[str, Any]] = {BUYER.name: {}, SHIPPING_ADDRESS.name: {}}
    for key, value in order.items():
        if value is None:  # an absent optional field
            continue
        value = _document_value(key, value)
        if key in CLEAR_TOP_LEVEL:
            clear[key] = value
            continue
        # PII, or not yet classified: encrypted either way, only its shape stays in clear.
        target = PII_TOP_LEVEL.get(key, BUYER)
        records[target.name][key] = value
        clear[key] = mask(value)
    buyer = order.get("BuyerInfo") or {}
    address = order.get("ShippingAddress") or {}
    email = buyer.get("BuyerEmail")
    phone = address.get("Phone")
    postal = address.get("PostalCode")
    return MappedOrder(
        amazon_order_id=order["AmazonOrderId"],
        purchase_date=order["PurchaseDate"],
        last_update_date=order["LastUpdateDate"],
        order_status=order["OrderStatus"],
        marketplace_id=order.get("MarketplaceId"),
        clear=clear,
        buyer=records[BUYER.name],
        shipping_address=records[SHIPPING_ADDRESS.name],
        buyer_email=normalize_email(email) if email else None,
        buyer_phone=normalize_phone(phone) if phone else None,
        postal_code=normalize_postal_code(postal) if postal else None,
    )
