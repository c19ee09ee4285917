"""The registry classifies every field the policy names as PII, and nothing PII is clear."""

from __future__ import annotations

from sellervault.records.registry import (
    BUYER,
    CLEAR_TOP_LEVEL,
    ORDER,
    PII_TOP_LEVEL,
    RECORD_TYPES,
    SHIPPING_ADDRESS,
    Category,
    Purpose,
    record_type,
)

# PARAMETERS.md, "What counts as PII in marketplace orders".
POLICY_PII = {
    "BuyerInfo.BuyerEmail", "BuyerInfo.BuyerName", "BuyerInfo.BuyerTaxInfo",
    "BuyerInfo.PurchaseOrderNumber", "GiftMessage", "BuyerIpAddress", "BuyerTaxInformation",
    "ShippingAddress.Name", "ShippingAddress.AddressLine1", "ShippingAddress.AddressLine2",
    "ShippingAddress.AddressLine3", "ShippingAddress.City", "ShippingAddress.County",
    "ShippingAddress.District", "ShippingAddress.StateOrRegion", "ShippingAddress.PostalCode",
    "ShippingAddress.CountryCode", "ShippingAddress.Phone",
}


def test_every_policy_pii_field_is_classified_pii() -> None:
    classified = {f.name for rt in RECORD_TYPES for f in rt.fields if f.category is Category.PII}
    assert classified >= POLICY_PII


def test_no_pii_record_is_stored_in_clear() -> None:
    assert not set(PII_TOP_LEVEL) & CLEAR_TOP_LEVEL
    assert {"BuyerInfo", "ShippingAddress"} <= set(PII_TOP_LEVEL)
    assert all(f.category is not Category.PII for f in ORDER.fields)


def test_every_field_has_a_purpose_and_a_disposal_rule() -> None:
    for rt in RECORD_TYPES:
        for field in rt.fields:
            assert field.purpose and field.disposal, (rt.name, field.name)


def test_pii_record_types_and_lookup() -> None:
    assert BUYER.category is SHIPPING_ADDRESS.category is Category.PII
    assert record_type("buyer") is BUYER


def test_permitted_purposes_are_exactly_the_policys() -> None:
    assert {p.value for p in Purpose} == {"fulfillment", "tax-remittance", "tax-invoicing",
                                          "legal-obligation"}
