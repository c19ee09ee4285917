"""Retention from the order's life (CONTROLS.md row R1; ``records.lifetimes``): the
``order-retention`` job erases buyer PII 30 days after delivery (the order's data key
destroyed, its sealed records and blind-index entries dropped, the order data kept) and
removes orders 18 months after purchase, except what a legal hold keeps
(``deletion.holds``), asked again in the statement that changes the rows. A batch per
transaction; each run one event per kind of removal with its count. ``run(dry_run=True)``
changes nothing and says what would go."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import SYSTEM_ACTOR, Outcome, TargetType
from sellervault.deletion import ledger
from sellervault.records import erasure, tombstones
from sellervault.runtime import Runtime


@dataclass(frozen=True)
class RetentionReport:
    pii_removed: int
    """Orders whose buyer PII was erased (would be, in a dry run)."""
    orders_removed: int
    held: int
    """Orders a legal hold kept from retention."""
    without_pii_expiry: int
    """Orders holding PII with no delivery or ship date yet."""
    dry_run: bool
    tombstones_removed: int = 0
    """Tombstones of orders deleted on request whose orders would have expired by now
    (``records.tombstones``): dropped (would be, in a dry run)."""


def run(rt: Runtime, dry_run: bool = False) -> RetentionReport:
    now = rt.clock.now()
    with rt.store.transaction() as session:
        held = erasure.count_held(session, now)
        undated = erasure.count_without_pii_expiry(session)
    if dry_run:
        with rt.store.transaction() as session:
            return RetentionReport(len(_all(session, now, erasure.pii_expired)),
                                   len(_all(session, now, erasure.orders_expired)), held,
                                   undated, dry_run=True,
                                   tombstones_removed=tombstones.count_expired(session, now))
    orders = _in_batches(rt, now, erasure.orders_expired, erasure.delete_unless_held,
                         Action.RETENTION_REMOVE_ORDERS)
    pii = _in_batches(rt, now, erasure.pii_expired, erasure.remove_pii_unless_held,
                      Action.RETENTION_REMOVE_PII, pii_only=True)
    with rt.store.transaction() as session:
        forgotten = tombstones.forget_expired(session, now)
        if forgotten:  # (their orders' time is up: a re-sync is no longer withheld)
            Auditor(rt.audit, SYSTEM_ACTOR).record(
                session, Action.RETENTION_FORGET_TOMBSTONES, Outcome.SUCCESS,
                target_type=TargetType.ORDER, count=forgotten)
    return RetentionReport(pii, orders, held, undated, dry_run=False,
                           tombstones_removed=forgotten)


def remove_expired(rt: Runtime) -> int:
    """The ``order-retention`` job: the PII erased and the orders removed."""
    report = run(rt)
    return report.pii_removed + report.orders_removed


Finder = Callable[[Session, datetime, int], list[erasure.OrderRef]]


def _all(session: Session, now: datetime, find: Finder) -> list[erasure.OrderRef]:
    return find(session, now, 1 << 30)


def _in_batches(rt: Runtime, now: datetime, find: Finder,
                remove: Callable[[Session, Sequence[str], datetime], list[erasure.OrderRef]],
                action: Action, *, pii_only: bool = False) -> int:
    """Each batch, one transaction: the rows changed (``pii_only``: their PII removed, else
    the rows deleted) where no hold keeps them, the hold asked again in that very statement
    (one placed after the find, under READ COMMITTED, keeps its order); then the data keys
    of exactly the rows it changed destroyed, written ahead to the erasure ledger before the
    commit. One event with the total (and none when nothing went)."""
    total = 0
    while True:
        with rt.store.transaction() as session:
            batch = find(session, now, erasure.DELETE_BATCH)
            removed = remove(session, [order.id for order in batch], now)
            by_tenant: dict[str, list[erasure.OrderRef]] = defaultdict(list)
            for order in removed:
                by_tenant[order.tenant_id].append(order)
            for tenant_id, orders in by_tenant.items():
                key_ids, ids = [o.data_key_id for o in orders], [o.id for o in orders]
                ledger.record(rt.settings, session, ledger.Erasure(
                    tenant_id, data_keys=key_ids, pii_of=ids if pii_only else [],
                    orders=[] if pii_only else ids))
                rt.keyring.destroy_data_keys(session, tenant_id, key_ids)
        total += len(removed)
        if len(batch) < erasure.DELETE_BATCH:
            break
    if total:
        with rt.store.transaction() as session:
            Auditor(rt.audit, SYSTEM_ACTOR).record(
                session, action, Outcome.SUCCESS, target_type=TargetType.ORDER, count=total)
    return total
