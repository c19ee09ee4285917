"""Orders deleted on request stay deleted: a marketplace re-sync that sends one again is
withheld at ingest, not stored anew (``ErasedOrder``).

A tombstone is the tenant's blind-index digest of the marketplace order id (the index key's
purpose ``amazon-order-id``), so the table tells whoever lacks the tenant's index key only
how many orders were deleted. It is written in the transaction that deletes the order
(``deletion.execution``) and, through the erasure ledger, again after a restore from a
backup taken before (``deletion.ledger``). Only deletion requests write them: retention's
removals are of orders past their time, which a marketplace no longer sends, and an erased
tenant refuses every ingest."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from sellervault.crypto.blind_index import BlindIndex
from sellervault.records.models import ErasedOrder
from sellervault.store.upsert import insert_into

ORDER_ID = "amazon-order-id"
"""The blind index's purpose for a marketplace order id."""

_ERASED_ORDERS = cast(Table, ErasedOrder.__table__)


def digests(index: BlindIndex, amazon_order_ids: Iterable[str]) -> list[bytes]:
    return [index.digest(ORDER_ID, amazon_order_id) for amazon_order_id in amazon_order_ids]


def bury(session: Session, tenant_id: str, order_digests: Sequence[bytes],
         now: datetime) -> None:
    """Tombstones for these orders (each once: a deletion resumed, or applied again from the
    ledger, writes the same)."""
    if order_digests:
        session.execute(insert_into(session, _ERASED_ORDERS).values(
            [{"tenant_id": tenant_id, "order_digest": digest, "erased_at": now}
             for digest in order_digests]).on_conflict_do_nothing(
            index_elements=["tenant_id", "order_digest"]))


def withheld(session: Session, index: BlindIndex, tenant_id: str,
             amazon_order_ids: Sequence[str]) -> set[str]:
    """Which of these orders were deleted on request (ingest stores none of them)."""
    if not amazon_order_ids:
        return set()
    by_digest = dict(zip(digests(index, amazon_order_ids), amazon_order_ids, strict=True))
    found = session.scalars(select(ErasedOrder.order_digest).where(
        ErasedOrder.tenant_id == tenant_id, ErasedOrder.order_digest.in_(list(by_digest))))
    return {by_digest[digest] for digest in found}
