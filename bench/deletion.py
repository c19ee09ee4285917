"""Deletion: how fast a large tenant becomes unreadable and is purged, and one buyer erased.

Two tenants of ``--orders`` orders each are stored through the product's storage path
(``records.store_orders``, 1,000 a transaction), the second with one buyer's ``--buyer``
orders among them. Then, in one run:

- ``unreadable``: a deletion request of the first tenant executed up to its first step (its
  key-encryption and index keys destroyed): from that commit on, nothing of it decrypts;
- ``purge``: the rest of the execution (its rows and data keys deleted a batch at a time,
  verified, certified), against the baseline, a plain ``DELETE`` of the second tenant's
  orders and data keys in one statement each (no keys destroyed first, no batches, no
  events);
- ``buyer``: a deletion request of the buyer in the second tenant, filed and executed
  (found through the blind index among ``--orders`` orders), end to end.

Targets (issue 14): unreadable under 1 s, purged under 5 minutes, a buyer under 1 s, for a
tenant of 1,000,000 orders.

    .venv/bin/python bench/deletion.py [--db sqlite|postgresql] [--orders 100000] [--buyer 20]

The last line is JSON: {"bench": "deletion", "db": ..., "orders": n, "unreadable_s": u,
"purge_s": p, "plain_delete_s": d, "purge_vs_plain": p/d, "buyer_s": b, ...}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from _common import clean_environment, emit, new_instance, scratch_database
from sellervault import bootstrap
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel
from sellervault.deletion import execution, requests
from sellervault.records import service as records
from sellervault.records.spapi import map_order, validate_order
from sellervault.records.synthetic import synthetic_orders
from sellervault.runtime import Runtime

BATCH = 1000
OFFICER = "acc_" + "5" * 24
BUYER = "bench.buyer@marketplace.example.test"


def _store(runtime: Runtime, tenant: str, count: int, buyer_orders: int = 0) -> None:
    auditor = Auditor(runtime.audit, Actor(Channel.API, actor_id="acc_ingest"))
    made = 0
    for first in range(0, count, BATCH):
        orders = list(synthetic_orders(min(BATCH, count - first), start=first,
                                       prefix=tenant[:3]))
        for order in orders:
            if made < buyer_orders:
                order["BuyerInfo"]["BuyerEmail"] = BUYER
                made += 1
        records.ingest(runtime, auditor, tenant, [map_order(validate_order(o))
                                                  for o in orders])


def _plain_delete(runtime: Runtime, tenant: str) -> float:
    started = time.perf_counter()
    with runtime.store.engine.begin() as connection:
        connection.execute(text("DELETE FROM orders WHERE tenant_id = :t"), {"t": tenant})
        connection.execute(text("DELETE FROM data_keys WHERE tenant_id = :t"), {"t": tenant})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--buyer", type=int, default=20)
    args = parser.parse_args()
    clean_environment()
    with tempfile.TemporaryDirectory(prefix="sv-bench-deletion-") as scratch, \
            scratch_database(args.db, Path(scratch) / "db", "deletion") as url:
        settings, _ = new_instance(Path(scratch) / "data", url)
        runtime = bootstrap.open_runtime(settings)
        try:
            started = time.perf_counter()
            _store(runtime, "big-a", args.orders)
            _store(runtime, "big-b", args.orders, args.buyer)
            stored = time.perf_counter() - started
            print(f"stored 2 x {args.orders} orders in {stored:.0f} s", flush=True)
            officer = Auditor(runtime.audit, Actor(Channel.API, actor_id=OFFICER))

            started = time.perf_counter()
            buyer = requests.file_request(runtime, officer, OFFICER, scope="buyer",
                                          tenant_id="big-b", requested_by="bench",
                                          buyer_email=BUYER)
            erased = execution.execute(runtime, officer, OFFICER, buyer.id)
            buyer_s = time.perf_counter() - started
            assert erased.orders == args.buyer, erased

            tenant = requests.file_request(runtime, officer, OFFICER, scope="tenant",
                                           tenant_id="big-a", requested_by="bench")
            started = time.perf_counter()
            execution.execute(runtime, officer, OFFICER, tenant.id,
                              until=execution.KEYS_DESTROYED)
            unreadable_s = time.perf_counter() - started
            started = time.perf_counter()
            done = execution.execute(runtime, officer, OFFICER, tenant.id)
            purge_s = time.perf_counter() - started
            assert done.step == execution.CERTIFIED and done.orders, done

            plain_s = _plain_delete(runtime, "big-b")
        finally:
            runtime.close()
    print(f"tenant of {args.orders} orders: unreadable in {unreadable_s:.3f} s (target < 1), "
          f"purged in {purge_s:.1f} s (target < 300) vs a plain DELETE {plain_s:.1f} s: "
          f"{purge_s / plain_s:.2f}x; a buyer's {args.buyer} orders erased in "
          f"{buyer_s:.3f} s (target < 1)")
    emit({"bench": "deletion", "db": args.db, "orders": args.orders,
          "unreadable_s": round(unreadable_s, 4), "purge_s": round(purge_s, 2),
          "plain_delete_s": round(plain_s, 2), "purge_vs_plain": round(purge_s / plain_s, 2),
          "buyer_s": round(buyer_s, 4), "buyer_orders": args.buyer,
          "targets": {"unreadable_s": 1, "purge_s": 300, "buyer_s": 1}})


if __name__ == "__main__":
    main()
