"""How long an order's data may be kept (PARAMETERS.md; the registry's disposal rules): its
buyer PII until 30 days after delivery (or after shipment, when no delivery date is known),
the order itself 18 months from its purchase. Computed at every ingest of the order, so a
later update of its dates (a new ``LatestDeliveryDate``) moves them.

An order that has neither date (pending, never shipped) has no PII expiry yet: its PII stays
until an update brings one, or until the order itself goes at 18 months (the retention
run counts such orders, so they are seen)."""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

PII_DAYS_AFTER_DELIVERY = 30
ORDER_MONTHS = 18


def pii_expiry(clear: Mapping[str, Any]) -> datetime | None:
    """When the buyer PII goes: 30 days after ``LatestDeliveryDate``, else after
    ``LatestShipDate``; None when the order has neither (or neither is a date-time)."""
    for field in ("LatestDeliveryDate", "LatestShipDate"):
        moment = _moment(clear.get(field))
        if moment is not None:
            try:
                return moment + timedelta(days=PII_DAYS_AFTER_DELIVERY)
            except OverflowError:  # (a date near year 9999)
                return datetime.max.replace(tzinfo=UTC)
    return None


def order_expiry(purchased: datetime) -> datetime:
    """When the order goes: 18 calendar months after its purchase (a day the month lacks
    becomes that month's last)."""
    purchased = purchased.astimezone(UTC)
    months = purchased.month - 1 + ORDER_MONTHS
    year, month = purchased.year + months // 12, months % 12 + 1
    day = min(purchased.day, calendar.monthrange(year, month)[1])
    try:
        return purchased.replace(year=year, month=month, day=day)
    except ValueError:  # past year 9999: kept as long as a date can say
        return datetime.max.replace(tzinfo=UTC)


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return None
