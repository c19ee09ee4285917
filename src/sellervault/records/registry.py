"""The one registry of record types and their fields, each classified.

This is the data classification in code (control G2): the record of processing activities
is generated from it, ingest decides from it what is encrypted, and reading masks from it.
A field missing from the registry is never stored in clear: it is encrypted with the buyer
record, as if it were PII, until someone classifies it here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    PII = "pii"
    CONFIDENTIAL = "confidential"
    PUBLIC = "public"


class Purpose(StrEnum):
    """Purposes for which PII may be revealed (DPP 2.1 and the Acceptable Use Policy)."""

    FULFILLMENT = "fulfillment"
    TAX_REMITTANCE = "tax-remittance"
    TAX_INVOICING = "tax-invoicing"
    LEGAL_OBLIGATION = "legal-obligation"


PURPOSES = frozenset(purpose.value for purpose in Purpose)
PII_DISPOSAL = "crypto-erase 30 days after delivery (or shipment when no delivery date is known)"
CONFIDENTIAL_DISPOSAL = "delete 18 months after the order"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    category: Category
    purpose: str
    disposal: str


@dataclass(frozen=True, slots=True)
class RecordType:
    name: str
    source: str
    category: Category
    fields: tuple[FieldSpec, ...]

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)


def _fields(category: Category, purpose: str, disposal: str, *names: str) -> tuple[FieldSpec, ...]:
    return tuple(FieldSpec(n, category, purpose, disposal) for n in names)


_PII_PURPOSE = "fulfillment, tax remittance, tax invoicing, legal obligation"

ORDER = RecordType(
    name="order",
    source="SP-API Orders v0 Order (non-personal attributes)",
    category=Category.CONFIDENTIAL,
    fields=_fields(
        Category.CONFIDENTIAL, "order management and fulfilment", CONFIDENTIAL_DISPOSAL,
        "AmazonOrderId", "SellerOrderId", "PurchaseDate", "LastUpdateDate", "OrderStatus",
        "FulfillmentChannel", "SalesChannel", "OrderChannel", "ShipServiceLevel", "OrderTotal",
        "NumberOfItemsShipped", "NumberOfItemsUnshipped", "PaymentExecutionDetail",
        "PaymentMethod", "PaymentMethodDetails", "MarketplaceId", "ShipmentServiceLevelCategory",
        "EasyShipShipmentStatus", "CbaDisplayableShippingLabel", "OrderType", "EarliestShipDate",
        "LatestShipDate", "EarliestDeliveryDate", "LatestDeliveryDate", "IsBusinessOrder",
        "IsPrime", "IsPremiumOrder", "IsGlobalExpressEnabled", "ReplacedOrderId",
        "IsReplacementOrder", "PromiseResponseDueDate", "IsEstimatedShipDateSet", "IsSoldByAB",
        "IsIBA", "DefaultShipFromLocationAddress", "BuyerInvoicePreference",
        "FulfillmentInstruction", "IsISPU", "IsAccessPointOrder", "MarketplaceTaxInfo",
        "AutomatedShippingSettings", "HasRegulatedItems", "ElectronicInvoiceStatus",
        "ShippingAddressType",
    ),
)

BUYER = RecordType(
    name="buyer",
    source="SP-API Orders v0 BuyerInfo and BuyerTaxInformation",
    category=Category.PII,
    fields=_fields(
        Category.PII, _PII_PURPOSE, PII_DISPOSAL,
        "BuyerInfo.BuyerEmail", "BuyerInfo.BuyerName", "BuyerInfo.BuyerCounty",
        "BuyerInfo.BuyerTaxInfo", "BuyerInfo.PurchaseOrderNumber", "BuyerTaxInformation",
        "GiftMessage", "BuyerIpAddress",
    ),
)

SHIPPING_ADDRESS = RecordType(
    name="shipping_address",
    source="SP-API Orders v0 ShippingAddress",
    category=Category.PII,
    fields=_fields(
        Category.PII, _PII_PURPOSE, PII_DISPOSAL,
        "ShippingAddress.Name", "ShippingAddress.CompanyName", "ShippingAddress.AddressLine1",
        "ShippingAddress.AddressLine2", "ShippingAddress.AddressLine3", "ShippingAddress.City",
        "ShippingAddress.County", "ShippingAddress.District", "ShippingAddress.StateOrRegion",
        "ShippingAddress.Municipality", "ShippingAddress.PostalCode",
        "ShippingAddress.CountryCode", "ShippingAddress.Phone", "ShippingAddress.AddressType",
        "ShippingAddress.ExtendedFields",
    ),
)

RECORD_TYPES: tuple[RecordType, ...] = (ORDER, BUYER, SHIPPING_ADDRESS)

# Top-level Order keys whose whole value belongs to an encrypted record.
PII_TOP_LEVEL: dict[str, RecordType] = {
    "BuyerInfo": BUYER,
    "BuyerTaxInformation": BUYER,
    "GiftMessage": BUYER,
    "BuyerIpAddress": BUYER,
    "ShippingAddress": SHIPPING_ADDRESS,
}
CLEAR_TOP_LEVEL = ORDER.field_names


def record_type(name: str) -> RecordType:
    for candidate in RECORD_TYPES:
        if candidate.name == name:
            return candidate
    raise KeyError(name)
