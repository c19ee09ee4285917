"""Canary orders: honeytokens every tenant holds from its first ingest, which nobody with a
legitimate task ever opens (``monitoring.detectors``: a read, search hit or reveal of one is
a critical alert and, by default, locks whoever did it).

A canary must look like any other order *of its tenant* to every reader, or a careful thief
skips it:

- modelled on one of the tenant's own orders (``canary_order``'s ``model``, chosen by the
  seed): the same marketplace, sales channel, currency, service level, flags, totals and the
  same set of fields, down to which address and buyer fields are present (a masked reader
  sees that shape), in the same country and city, a postal code of the same area
  (``nearby``). Nothing personal is copied:
  the name, street line, phone, e-mail and every other buyer value are made up in the model's
  format (digits stay digits, a marketplace relay address stays one), and the order ids are
  new ones with the model's prefix. Without a model (a first ingest of orders that carry no
  buyer) a canary is a US order on Amazon.com;
- unpredictable: each tenant's canaries come from a keyed seed (HMAC-SHA256 under the system
  key ``canary-seed`` of the tenant's name and the canary's number), so nobody without the
  key can tell which ids they are; the seed drives a generator of fake values only;
- recent: a canary is dated its own 1 to 6 days (``canary_age``, keyed by its id) before
  *now*, at the tenant's first ingest and again each day (``redate``, by the
  ``canaries-refresh`` job, which moves every date of the order and touches nothing else), so
  canaries never stand out as the tenant's oldest orders, and retention never removes them.
  What a reader could notice is that a canary's dates move between two looks; that is the
  price of keeping them fresh.

The only mark is the ``is_canary`` column, which no reader's view includes. A canary keeps the
city and postal area of the order it was modelled on after that order is deleted: they are
shared by many people and name none of them (a decision, recorded in docs/operations.md).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
import string
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sellervault.records.registry import CLEAR_TOP_LEVEL
from sellervault.records.spapi import MappedOrder

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


# Words for made-up names and street lines, by the model's country (English otherwise).
NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "DE": (("Lukas", "Anna", "Jonas", "Lea", "Felix", "Marie", "Paul", "Sophie", "Leon"),
           ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker")),
    "FR": (("Louis", "Camille", "Hugo", "Léa", "Jules", "Chloé", "Arthur", "Manon"),
           ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand")),
    "ES": (("Hugo", "Lucía", "Martín", "Sofía", "Pablo", "María", "Daniel", "Paula"),
           ("García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez")),
    "IT": (("Leonardo", "Sofia", "Francesco", "Giulia", "Alessandro", "Aurora", "Lorenzo"),
           ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci")),
}
STREET_LINES: dict[str, tuple[str, ...]] = {
    "DE": ("Hauptstraße {n}", "Bahnhofstraße {n}", "Gartenstraße {n}", "Schulstraße {n}"),
    "AT": ("Hauptstraße {n}", "Bahnhofstraße {n}", "Kirchengasse {n}", "Schulgasse {n}"),
    "FR": ("{n} rue de la Paix", "{n} avenue Victor Hugo", "{n} rue du Moulin"),
    "ES": ("Calle Mayor, {n}", "Calle Real, {n}", "Avenida de la Constitución, {n}"),
    "IT": ("Via Roma {n}", "Via Garibaldi {n}", "Corso Italia {n}", "Via Mazzini {n}"),
}
ENGLISH_STREET_LINES = tuple(f"{{n}} {street}" for street in STREETS)
EXTRA_LINES: dict[str, tuple[str, ...]] = {
    "DE": ("{n}. OG", "Whg. {n}"), "AT": ("Top {n}", "Stiege {n}"),
    "FR": ("Appt {n}", "Bât. {n}"), "ES": ("Piso {n}", "Puerta {n}"),
    "IT": ("Interno {n}", "Scala {n}"),
}
ENGLISH_EXTRA_LINES = ("Apt {n}", "Unit {n}", "Suite {n}", "Floor {n}")
# Kept from the model: where the order goes, not who it goes to.
LOCALE_FIELDS = frozenset({"City", "County", "District", "StateOrRegion", "Municipality",
                           "PostalCode", "CountryCode", "AddressType", "BuyerCounty",
                           "TaxingRegion"})
RELAY = re.compile(r"^[a-z0-9]+@(marketplace\.amazon\.[a-z.]+)$")
PUBLIC_MAIL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com",
                       "web.de", "gmx.de", "orange.fr", "libero.it")
# References (the seller's, the marketplace's, the buyer's purchase order and tax numbers):
# new ones in the model's scheme.
REFERENCE_FIELDS = frozenset({"SellerOrderId", "ReplacedOrderId", "PurchaseOrderNumber",
                              "Value"})
DATED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


def _rng(seed: bytes, number: int) -> random.Random:
    return random.Random(hmac.new(seed, number.to_bytes(4, "big"),  # noqa: S311 - fake values
                                  hashlib.sha256).digest())


def canary_age(seed: bytes, amazon_order_id: str) -> timedelta:
    """How long before *now* a canary is dated: its own 1 to 6 days (and minutes and
    seconds: whole minutes gave every canary the seconds of the run that dated it), the same
    at every refresh, from the seed and its id."""
    digest = hmac.new(seed, b"age\x00" + amazon_order_id.encode(), hashlib.sha256).digest()
    return timedelta(days=1 + digest[0] % 6, minutes=int.from_bytes(digest[1:3], "big") % 1440,
                     seconds=digest[3] % 60)


def canary_order(seed: bytes, number: int, now: datetime,
                 model: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Canary ``number`` of a tenant whose seed is ``seed``, modelled on ``model`` (one of
    the tenant's orders as ingest received it, PII included; nothing personal of it is
    kept), dated ``canary_age`` before ``now``. The same ``model`` gives the same order
    every time, but for its dates."""
    rng = _rng(seed, number)
    order_id = _order_id(rng, model)
    order = _modelled(rng, model) if model is not None else _stock(rng)
    order["AmazonOrderId"] = order_id  # (in the model's place: the fields keep its order)
    if model is not None and model.get("SellerOrderId") == model.get("AmazonOrderId"):
        order["SellerOrderId"] = order_id  # the seller's id is the marketplace's, as in its model
    purchased = (now - canary_age(seed, order_id)).replace(microsecond=0)
    return redate(order, purchased, now)


def redate(order: dict[str, Any], purchased: datetime, now: datetime) -> dict[str, Any]:
    """``order`` with its purchase date ``purchased`` and every other date moved by as much
    (the last update, the ship and delivery windows), each written as it was; but a last
    update is never after ``now`` (a model updated weeks after its purchase): then it is
    half-way between the purchase and now."""
    shift = purchased - parse_date(order["PurchaseDate"])
    moved = {key: _shifted(value, shift) if isinstance(value, str) and DATED.match(value)
             else value for key, value in order.items()}
    updated = moved.get("LastUpdateDate")
    if isinstance(updated, str) and DATED.match(updated) and parse_date(updated) > now:
        halfway = purchased + (now - purchased) / 2
        moved["LastUpdateDate"] = _shifted(updated, halfway.replace(microsecond=0)
                                           - parse_date(updated))
    return moved


def parse_date(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _shifted(text: str, shift: timedelta) -> str:
    try:
        moment = parse_date(text) + shift
    except ValueError:
        return text  # dated-looking but not a date-time: left as it is
    if not text.endswith("Z"):
        return moment.isoformat()
    fraction = re.search(r"\.(\d+)Z$", text)
    digits = f".{moment.microsecond:06d}"[:len(fraction.group(1)) + 1] if fraction else ""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + digits + "Z"


def model_of(order: MappedOrder) -> dict[str, Any]:
    """An ingested order as it was received, its fields in their order: a canary's model."""
    records = {**order.buyer, **order.shipping_address}
    return {key: records.get(key, value) for key, value in order.clear.items()}


def choose_model(seed: bytes, number: int,
                 models: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The order canary ``number`` is modelled on: one of ``models`` with a buyer or an
    address (orders without PII make poor canaries), chosen by the seed; None if none has."""
    usable = sorted((m for m in models if m.get("BuyerInfo") or m.get("ShippingAddress")),
                    key=lambda m: str(m["AmazonOrderId"]))
    if not usable:
        return None
    digest = hmac.new(seed, b"model\x00" + number.to_bytes(4, "big"), hashlib.sha256).digest()
    return usable[int.from_bytes(digest[:8], "big") % len(usable)]


def _order_id(rng: random.Random, model: Mapping[str, Any] | None) -> str:
    """A new id in the model's format with the model's first three characters (a
    marketplace's ids share a few prefixes), or in Amazon's ``NNN-NNNNNNN-NNNNNNN``."""
    if model is None:
        return (f"{rng.choice(ORDER_PREFIXES)}-{rng.randint(0, 9_999_999):07d}-"
                f"{rng.randint(0, 9_999_999):07d}")
    template = str(model["AmazonOrderId"])
    return template[:3] + like(rng, template[3:])


def like(rng: random.Random, reference: str) -> str:
    """A made-up reference of ``reference``'s form: each digit a random digit, everything else
    kept (a reference's letters are its scheme: ``PO-``, ``DE``)."""
    return "".join(rng.choice(string.digits) if char.isdigit() else char for char in reference)


def nearby(rng: random.Random, postal_code: str) -> str:
    """A postal code of the same area: the last two digits made up, the rest kept (ZIP
    50667 -> 506NN, Cologne still). A canary seldom shares its model's code, so a search by
    postal code seldom finds one by chance (which alerts: ``monitoring.detectors``)."""
    positions = [i for i, char in enumerate(postal_code) if char.isdigit()]
    if len(positions) < 5:  # too short to keep an area (1010 Vienna, SW1A 1AA): kept whole
        return postal_code
    chars = list(postal_code)
    for i in positions[-2:]:
        chars[i] = rng.choice(string.digits)
    return "".join(chars)


def scrambled(rng: random.Random, text: str) -> str:
    """A made-up text of ``text``'s form, nothing of it kept but its punctuation: each digit a
    random digit, each letter a random letter of the same case."""
    return "".join(rng.choice(string.digits) if char.isdigit()
                   else rng.choice(string.ascii_uppercase) if char.isupper()
                   else rng.choice(string.ascii_lowercase) if char.isalpha()
                   else char for char in text)


def _stock(rng: random.Random) -> dict[str, Any]:
    """A US order on Amazon.com, for a tenant with no order to model canaries on."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    city, state, postal, area = rng.choice(CITIES)
    level, service = rng.choice(ITEMS)
    purchased = datetime(2026, 1, 1, tzinfo=UTC)  # moved by ``redate``
    relay = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(15))
    shipped = rng.random() < 0.7
    return {
        "AmazonOrderId": "",
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


def _modelled(rng: random.Random, model: Mapping[str, Any]) -> dict[str, Any]:
    """The model's order data as it is (a product, price and service level of this seller),
    its references new, and every personal value made up in its form."""
    address = model.get("ShippingAddress")
    country = str(address.get("CountryCode") or "") if isinstance(address, dict) else ""
    firsts, lasts = NAMES.get(country, (FIRST, LAST))
    made_up = _MadeUp(rng, country, f"{rng.choice(firsts)} {rng.choice(lasts)}", lasts)
    order: dict[str, Any] = {}
    for key, value in model.items():
        if key in REFERENCE_FIELDS and isinstance(value, str):
            order[key] = like(rng, value)
        elif key in CLEAR_TOP_LEVEL:
            order[key] = value
        else:  # a buyer's record: made up, field by field, in its shape
            order[key] = made_up.value(key, value)
    return order


class _MadeUp:
    """Made-up values for one canary's buyer: one person, in the model's country."""

    def __init__(self, rng: random.Random, country: str, person: str,
                 surnames: tuple[str, ...]) -> None:
        self.rng, self.country, self.person, self.surnames = rng, country, person, surnames

    def value(self, field: str, value: Any) -> Any:
        if isinstance(value, dict):
            if "Name" in value and "Value" in value:  # a tax classification: its kind stays
                return {**value, "Value": self.value("Value", value["Value"])}
            return {key: self.value(key, item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(field, item) for item in value]
        if not isinstance(value, str):
            return value  # a flag or a number says nothing about the buyer
        if field == "PostalCode":
            return nearby(self.rng, value)
        if field in LOCALE_FIELDS:
            return value  # where the order goes (the country, the city), not who to
        return self._text(field, value)

    def _text(self, field: str, value: str) -> str:
        rng = self.rng
        if field in ("Name", "BuyerName"):
            return self.person
        if field == "CompanyLegalName":  # a surname and the model's legal form (GmbH, LLC)
            words = value.split()
            return " ".join([rng.choice(self.surnames), *words[1:][-1:]])
        if field == "AddressLine1":
            lines = STREET_LINES.get(self.country, ENGLISH_STREET_LINES)
            return rng.choice(lines).format(n=rng.randint(1, 9899 if self.country in ("US", "")
                                                         else 199))
        if field in ("AddressLine2", "AddressLine3"):
            extras = EXTRA_LINES.get(self.country, ENGLISH_EXTRA_LINES)
            return rng.choice(extras).format(n=rng.randint(1, 40))
        if field == "BuyerEmail":
            return _email(rng, value, self.person)
        if field == "Phone":
            prefix = re.match(r"^\+\d+[ -]?", value)  # the country's calling code stays
            kept = prefix.group(0) if prefix else ""
            return kept + like(rng, value[len(kept):])
        if field in REFERENCE_FIELDS:  # a purchase order or tax number: its scheme stays
            return like(rng, value)
        return scrambled(rng, value)  # anything else (a gift message, a new field)


def _email(rng: random.Random, value: str, person: str) -> str:
    relay = RELAY.match(value.strip().lower())
    if relay is not None:
        return "".join(rng.choice(string.ascii_lowercase + string.digits)
                       for _ in range(15)) + "@" + relay.group(1)
    local = "".join(char for char in person.lower().replace(" ", ".") if char.isascii())
    return f"{local}{rng.randint(1, 99)}@{rng.choice(PUBLIC_MAIL_DOMAINS)}"
