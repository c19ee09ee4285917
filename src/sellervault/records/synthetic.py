"""Synthetic SP-API orders: clearly fake buyers for the demo, canaries, tests and benchmarks.

Every value is generated (example.test emails, 555 phone numbers); nothing comes from real
people. The shape follows the marketplace's own Orders v0 examples.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

FIRST = ("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn")
LAST = ("Rivera", "Chen", "Okafor", "Novak", "Schmidt", "Haddad", "Larsen", "Moreau", "Ito")
STREETS = ("Cross St.", "Harbor Ave", "Maple Rd", "Station Sq", "Mill Ln", "Orchard Way")
CITIES = (("Canton", "MI", "48817"), ("Seattle", "WA", "98121"), ("Austin", "TX", "78701"),
          ("Denver", "CO", "80202"), ("Boston", "MA", "02110"))
STATUSES = ("Unshipped", "Shipped", "Pending", "PartiallyShipped")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def synthetic_order(index: int, *, seed: int = 7, prefix: str = "902") -> dict[str, Any]:
    rng = random.Random(seed * 1_000_003 + index)  # noqa: S311 - fake data, not secrets
    first, last = rng.choice(FIRST), rng.choice(LAST)
    city, state, postal = rng.choice(CITIES)
    purchased = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=index * 7 + seed)
    order_id = f"{prefix}-{index // 10_000_000 % 10_000_000:07d}-{index % 10_000_000:07d}"
    return {
        "AmazonOrderId": order_id,
        "PurchaseDate": _iso(purchased),
        "LastUpdateDate": _iso(purchased + timedelta(hours=2)),
        "OrderStatus": rng.choice(STATUSES),
        "FulfillmentChannel": "MFN",
        "SalesChannel": "Amazon.com",
        "ShipServiceLevel": "Std US D2D Dom",
        "OrderTotal": {"CurrencyCode": "USD", "Amount": f"{rng.randint(500, 50_000) / 100:.2f}"},
        "NumberOfItemsShipped": 0,
        "NumberOfItemsUnshipped": rng.randint(1, 3),
        "PaymentMethod": "Other",
        "PaymentMethodDetails": ["Standard"],
        "MarketplaceId": "ATVPDKIKX0DER",
        "ShipmentServiceLevelCategory": "Standard",
        "OrderType": "StandardOrder",
        "EarliestShipDate": _iso(purchased + timedelta(days=1)),
        "LatestShipDate": _iso(purchased + timedelta(days=3)),
        "IsBusinessOrder": False,
        "IsPrime": rng.random() < 0.4,
        "IsPremiumOrder": False,
        "IsGlobalExpressEnabled": False,
        "IsSoldByAB": False,
        "IsIBA": False,
        "ShippingAddress": {
            "Name": f"{first} {last}",
            "AddressLine1": f"{rng.randint(1, 9999)} {rng.choice(STREETS)}",
            "City": city,
            "StateOrRegion": state,
            "PostalCode": postal,
            "CountryCode": "US",
            "Phone": f"+1 555-{rng.randint(100, 999):03d}-{rng.randint(0, 9999):04d}",
            "AddressType": "Residential",
        },
        "BuyerInfo": {
            "BuyerEmail": f"{first.lower()}.{last.lower()}.{index}@marketplace.example.test",
            "BuyerName": f"{first} {last}",
            "PurchaseOrderNumber": f"PO-{rng.randint(10**9, 10**10 - 1)}",
        },
    }


def synthetic_orders(count: int, *, seed: int = 7, start: int = 0,
                     prefix: str = "902") -> Iterator[dict[str, Any]]:
    for index in range(start, start + count):
        yield synthetic_order(index, seed=seed, prefix=prefix)
