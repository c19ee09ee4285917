"""Canary orders: honeytokens every tenant holds from its first ingest, which nobody with a
legitimate task ever opens (``monitoring.detectors``: a read, search hit or reveal of one is
a critical alert and, by default, locks whoever did it).

A canary must look like any other order to every reader, or a careful thief skips it:

- the shape of a real Orders v0 order (the marketplace's own examples), real US cities and
  their ZIP codes, a marketplace relay email (``<random>@marketplace.amazon.com``, as real
  buyers' are), an order id in the marketplace's ``NNN-NNNNNNN-NNNNNNN`` form;
- unpredictable: each tenant's canaries come from a keyed seed (HMAC-SHA256 under the system
  key ``canary-seed`` of the tenant's name and the canary's number), so nobody without the
  key can tell which ids they are; the seed drives a generator of fake values only;
- recent: their dates are set back from *now* each time they are written (at the tenant's
  first ingest, then daily by the ``canaries-refresh`` job), so they never stand out as the
  tenant's oldest orders, and retention never removes them. What a reader could notice is
  that a canary's dates move between two looks; that is the price of keeping them fresh.

The only mark is the ``is_canary`` column, which no reader's view includes.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import string
from datetime import datetime, timedelta
from typing import Any

CANARY_SEED_KEY = "canary-seed"

FIRST = ("Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "James", "Isabella",
         "Lucas", "Mia", "Mason", "Harper", "Ethan", "Evelyn", "Logan", "Abigail", "Daniel",
         "Emily", "Henry", "Ella", "Jackson", "Grace", "Sebastian", "Chloe", "Mateo")
LAST = ("Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
        "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas",
        "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris")
STREETS = ("Oak St", "Pine Ave", "Cedar Ln", "Elm Dr", "Washington Blvd", "Lake Rd",
           "Hillcrest Dr", "Park Pl", "Sunset Ave", "Highland Ave", "River Rd", "Main St")
CITIES = (("Portland", "OR", "97205", "503"), ("Columbus", "OH", "43215", "614"),
          ("Raleigh", "NC", "27601", "919"), ("Tucson", "AZ", "85701", "520"),
          ("Omaha", "NE", "68102", "402"), ("Madison", "WI", "53703", "608"),
          ("Richmond", "VA", "23219", "804"), ("Boise", "ID", "83702", "208"),
          ("Albany", "NY", "12207", "518"), ("Spokane", "WA", "99201", "509"))
ORDER_PREFIXES = ("111", "112", "113", "114", "701", "702")
ITEMS = (("Standard", "Std US D2D Dom"), ("Expedited", "Expedited US Std"),
         ("Standard", "Std Cont US Street Addr"))


def tenant_seed(key: bytes, tenant_id: str) -> bytes:
    """The seed of one tenant's canaries (HMAC-SHA256 under the canary-seed key)."""
    return hmac.new(key, b"canary\x00" + tenant_id.encode(), hashlib.sha256).digest()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def canary_order(seed: bytes, number: int, now: datetime) -> dict[str, Any]:
    """Canary ``number`` of a tenant whose seed is ``seed``: the same order (id, buyer,
    address) every time, its dates set back from ``now`` by its own 1 to 6 days."""
    rng = random.Random(hmac.new(seed, number.to_bytes(4, "big"),  # noqa: S311 - fake values
                                 hashlib.sha256).digest())
    first, last = rng.choice(FIRST), rng.choice(LAST)
    city, state, postal, area = rng.choice(CITIES)
    level, service = rng.choice(ITEMS)
    purchased = (now - timedelta(days=rng.randint(1, 6), minutes=rng.randint(0, 1439))
                 ).replace(microsecond=0)
    relay = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(15))
    order_id = (f"{rng.choice(ORDER_PREFIXES)}-{rng.randint(0, 9_999_999):07d}-"
                f"{rng.randint(0, 9_999_999):07d}")
    shipped = rng.random() < 0.7
    return {
        "AmazonOrderId": order_id,
        "PurchaseDate": _iso(purchased),
        "LastUpdateDate": _iso(purchased + timedelta(hours=rng.randint(1, 30))),
        "OrderStatus": "Shipped" if shipped else "Unshipped",
        "FulfillmentChannel": "MFN",
        "SalesChannel": "Amazon.com",
        "ShipServiceLevel": service,
        "OrderTotal": {"CurrencyCode": "USD", "Amount": f"{rng.randint(899, 18_999) / 100:.2f}"},
        "NumberOfItemsShipped": 1 if shipped else 0,
        "NumberOfItemsUnshipped": 0 if shipped else 1,
        "PaymentMethod": "Other",
        "PaymentMethodDetails": ["Standard"],
        "MarketplaceId": "ATVPDKIKX0DER",
        "ShipmentServiceLevelCategory": level,
        "OrderType": "StandardOrder",
        "EarliestShipDate": _iso(purchased + timedelta(days=1)),
        "LatestShipDate": _iso(purchased + timedelta(days=2)),
        "IsBusinessOrder": False,
        "IsPrime": rng.random() < 0.5,
        "IsPremiumOrder": False,
        "IsGlobalExpressEnabled": False,
        "IsSoldByAB": False,
        "IsIBA": False,
        "ShippingAddress": {
            "Name": f"{first} {last}",
            "AddressLine1": f"{rng.randint(100, 9899)} {rng.choice(STREETS)}",
            "City": city,
            "StateOrRegion": state,
            "PostalCode": postal,
            "CountryCode": "US",
            "Phone": f"+1 {area}-{rng.randint(200, 989)}-{rng.randint(1000, 9999)}",
            "AddressType": "Residential",
        },
        "BuyerInfo": {
            "BuyerEmail": f"{relay}@marketplace.amazon.com",
            "BuyerName": f"{first} {last}",
        },
    }
