"""Orders deleted on request stay deleted: a marketplace re-sync that sends one again is
withheld at ingest, not stored anew (``ErasedOrder``).

A tombstone is the tenant's blind-index digest of the marketplace order id (the index key's
purpose ``amazon-order-id``), so the table tells whoever lacks the tenant's index key only
how many orders were deleted. It is written in the transaction that deletes the order
(``deletion.execution``) and, through the erasure ledger, again after a restore from a
backup taken before (``deletion.ledger``). Only deletion requests write them: retention's
removals are of orders past their time, which a marketplace no longer sends, and an erased
tenant refuses every ingest. A tombstone goes when its order would have (18 months after
purchase: ``forget_expired``, in the retention run), and with its tenant."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.orm import Session

from sellervault.crypto.blind_index import BlindIndex
from sellervault.records.models import ErasedOrder
from sellervault.store.upsert import insert_into

ORDER_ID = "amazon-order-id"
"""The blind index's purpose for a marketplace order id."""

_ERASED_ORDERS = cast(Table, ErasedOrder.__table__)
_ANY = select(ErasedOrder.tenant_id).limit(1)


def digests(index: BlindIndex, amazon_order_ids: Iterable[str]) -> list[bytes]:
    return [index.digest(ORDER_ID, amazon_order_id) for amazon_order_id in amazon_order_ids]


@dataclass(frozen=True)
class Tombstone:
    digest: bytes
    expires_at: datetime
    """When the order would have been removed (``Order.expires_at``)."""


def bury(session: Session, tenant_id: str, buried: Sequence[Tombstone], now: datetime) -> None:
    """Tombstones for these orders (each once: a deletion resumed, or applied again from the
    ledger, writes the same)."""
    if buried:
        session.execute(insert_into(session, _ERASED_ORDERS).values(
            [{"tenant_id": tenant_id, "order_digest": tombstone.digest, "erased_at": now,
              "expires_at": tombstone.expires_at} for tombstone in buried])
            .on_conflict_do_nothing(index_elements=["tenant_id", "order_digest"]))


def forget_expired(session: Session, now: datetime) -> int:
    """Drop the tombstones whose orders would have expired by now; how many."""
    result = session.execute(delete(ErasedOrder).where(ErasedOrder.expires_at <= now))
    return int(result.rowcount)  # type: ignore[attr-defined]


def count_expired(session: Session, now: datetime) -> int:
    """How many tombstones ``forget_expired`` would drop now."""
    return session.scalar(select(func.count()).select_from(ErasedOrder).where(
        ErasedOrder.expires_at <= now)) or 0


def forget_tenant(session: Session, tenant_id: str) -> None:
    """Drop a tenant's tombstones (the tenant erased: its index key, which made them, is
    gone, and it takes no ingest)."""
    session.execute(delete(ErasedOrder).where(ErasedOrder.tenant_id == tenant_id))


def withheld(session: Session, index: BlindIndex, tenant_id: str,
             amazon_order_ids: Sequence[str]) -> set[str]:
    """Which of these orders were deleted on request (ingest stores none of them). A tenant
    without tombstones, the usual case, costs one index probe and no digests."""
    if not amazon_order_ids or session.scalar(_ANY.where(
            ErasedOrder.tenant_id == tenant_id)) is None:
        return set()
    by_digest = dict(zip(digests(index, amazon_order_ids), amazon_order_ids, strict=True))
    found = session.scalars(select(ErasedOrder.order_digest).where(
        ErasedOrder.tenant_id == tenant_id, ErasedOrder.order_digest.in_(list(by_digest))))
    return {by_digest[digest] for digest in found}
