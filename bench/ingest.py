"""Ingest: SellerVault's storage vs a plaintext table vs the usual sqlalchemy-utils recipe.

All three variants start from the same raw JSON bytes (one ``{"orders": [...]}`` body per
batch of synthetic SP-API orders) and share the same parsing and validation
(``parse_request``), mapping (``map_order``) and batching. They differ
only in how a mapped batch is stored:

(a) ``vault``: ``sellervault.records.service.ingest`` on an instance made by
    ``sellervault.bootstrap.init``: a data key per order wrapped by the tenant key, both PII
    records sealed with AES-256-GCM bound to their row, three blind indexes, one
    hash-chained security event per batch, all in one transaction.
(b) ``plaintext``: the same fields in plain columns of a table defined here (never in the
    product), bulk-inserted with SQLAlchemy Core, one transaction per batch: no keys, no
    indexes, no events. Only a primary key, so it is the cheapest honest baseline.
(c) ``peer``: what most Python teams write: an ORM model with sqlalchemy-utils'
    ``StringEncryptedType(String, key, AesGcmEngine)`` on each PII column and
    ``session.add_all`` per batch.

Every engine comes from ``sellervault.store.engine.make_engine`` (same SQLite pragmas: WAL,
synchronous=NORMAL, BEGIN IMMEDIATE; same PostgreSQL pool). Each variant has its own
database. Rounds are interleaved (the variant order rotates every round) and figures are
medians over rounds; ratios are medians of the per-round ratios.

    .venv/bin/python bench/ingest.py --db sqlite [--orders 20000]
    .venv/bin/python bench/ingest.py --db postgresql [--orders 20000]

The last line is JSON: {"bench": "ingest", "db": ..., "orders": N, "orders_per_s": r,
"vs_plaintext": time(a)/time(b), "vs_peer": time(c)/time(a)}.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Column, Engine, MetaData, String, Table, Text, func, insert, select
from sqlalchemy.orm import DeclarativeBase, mapped_column, sessionmaker
from sqlalchemy_utils import StringEncryptedType
from sqlalchemy_utils.types.encrypted.encrypted_type import AesGcmEngine

from _common import (
    clean_environment,
    emit,
    median,
    new_instance,
    scratch_database,
    spread,
)
from sellervault import bootstrap
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel
from sellervault.audit.reading import count_events
from sellervault.records import service as records
from sellervault.records.models import Order
from sellervault.records.registry import BUYER, CLEAR_TOP_LEVEL, SHIPPING_ADDRESS
from sellervault.records.spapi import MappedOrder, map_order, parse_request
from sellervault.records.synthetic import synthetic_order
from sellervault.runtime import Runtime
from sellervault.store.engine import make_engine
from sellervault.store.ids import new_ids
from sellervault.store.types import UTCDateTime
from sellervault.web.server import freeze_startup_objects

TENANT = "bench-seller"
VARIANTS = ("vault", "plaintext", "peer")
LABELS = {"vault": "(a) SellerVault, every control on",
          "plaintext": "(b) plaintext baseline (Core bulk insert)",
          "peer": "(c) sqlalchemy-utils StringEncryptedType/AesGcmEngine (ORM)"}


# -- the same fields in plain columns ------------------------------------------------------

def _pii_columns() -> list[tuple[str, str, tuple[str, ...]]]:
    """(column name, mapped record, path inside it) for every PII field of the registry."""
    columns = []
    for record_type, attribute in ((BUYER, "buyer"), (SHIPPING_ADDRESS, "shipping_address")):
        for spec in record_type.fields:
            path = tuple(spec.name.split("."))
            columns.append(("_".join(path).lower(), attribute, path))
    return columns


PII_COLUMNS = _pii_columns()
PII_NAMES = [name for name, _, _ in PII_COLUMNS]
# Grouped by top-level key, so an absent object skips all its columns at once.
_PII_GROUPS: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
for _name, _attribute, _path in PII_COLUMNS:
    _PII_GROUPS.setdefault((_attribute, _path[0]), []).append(
        (_name, _path[1] if len(_path) > 1 else None))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _pii_values(order: MappedOrder) -> dict[str, str | None]:
    """Each PII field of the order as its own plain value (None when absent)."""
    values: dict[str, str | None] = dict.fromkeys(PII_NAMES)
    for (attribute, top), fields in _PII_GROUPS.items():
        found = (order.buyer if attribute == "buyer" else order.shipping_address).get(top)
        if found is None:
            continue
        for name, sub in fields:
            if sub is None:
                values[name] = _text(found)
            elif isinstance(found, dict) and found.get(sub) is not None:
                values[name] = _text(found[sub])
    return values


def _clear_attributes(order: MappedOrder) -> str:
    return json.dumps({k: v for k, v in order.clear.items() if k in CLEAR_TOP_LEVEL},
                      separators=(",", ":"))


def _common_values(order: MappedOrder, order_id: str, now: datetime) -> dict[str, Any]:
    """The non-PII columns; ``order_id`` comes from the product's own id generator
    (``sellervault.store.ids``, time-ordered), so every variant's primary key behaves alike."""
    return {
        "id": order_id,
        "tenant_id": TENANT,
        "amazon_order_id": order.amazon_order_id,
        "purchase_date": order.purchase_date,
        "last_update_date": order.last_update_date,
        "order_status": order.order_status,
        "marketplace_id": order.marketplace_id,
        "attributes": _clear_attributes(order),
        "is_canary": False,
        "created_at": now,
        "updated_at": now,
    }


def _order_columns() -> list[Column[Any]]:
    return [
        Column("id", String(32), primary_key=True),
        Column("tenant_id", String(64), nullable=False),
        Column("amazon_order_id", String(64), nullable=False),
        Column("purchase_date", UTCDateTime, nullable=False),
        Column("last_update_date", UTCDateTime, nullable=False),
        Column("order_status", String(64), nullable=False),
        Column("marketplace_id", String(64)),
        Column("attributes", Text, nullable=False),
        Column("is_canary", Boolean, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
    ]


# (b) plaintext: SQLAlchemy Core, one bulk INSERT per batch.
plain_metadata = MetaData()
plain_orders = Table("bench_plain_orders", plain_metadata, *_order_columns(),
                     *[Column(name, Text) for name, _, _ in PII_COLUMNS])


# (c) peer: the ORM with StringEncryptedType(AesGcmEngine) on every PII column.
PEER_KEY = secrets.token_hex(32)  # one application-wide secret, as that recipe has it


class PeerBase(DeclarativeBase):
    pass


def _peer_model() -> type[PeerBase]:
    namespace: dict[str, Any] = {"__tablename__": "bench_peer_orders"}
    for column in _order_columns():
        namespace[column.name] = column
    for name, _, _ in PII_COLUMNS:
        namespace[name] = mapped_column(StringEncryptedType(String, PEER_KEY, AesGcmEngine),
                                        nullable=True)
    return type("PeerOrder", (PeerBase,), namespace)


PeerOrder = _peer_model()


# -- the three storage steps ---------------------------------------------------------------

Store = Callable[[list[MappedOrder]], None]


def vault_store(runtime: Runtime) -> Store:
    actor = Actor(channel=Channel.API, actor_id="bench-ingest", source_ip="127.0.0.1")

    def store(mapped: list[MappedOrder]) -> None:
        auditor = Auditor(runtime.audit, actor)  # one per request, as the web layer does
        result = records.ingest(runtime, auditor, TENANT, mapped)
        if result.inserted != len(mapped):
            raise RuntimeError("vault ingest did not insert every order")

    return store


def plaintext_store(engine: Engine) -> Store:
    def store(mapped: list[MappedOrder]) -> None:
        now = datetime.now(UTC)
        rows = [{**_common_values(order, order_id, now), **_pii_values(order)}
                for order, order_id in zip(mapped, new_ids(len(mapped), now), strict=True)]
        with engine.begin() as connection:
            connection.execute(insert(plain_orders), rows)

    return store


def peer_store(engine: Engine) -> Store:
    sessions = sessionmaker(engine, expire_on_commit=False)

    def store(mapped: list[MappedOrder]) -> None:
        now = datetime.now(UTC)
        ids = new_ids(len(mapped), now)
        with sessions.begin() as session:
            session.add_all([PeerOrder(**_common_values(order, order_id, now), **_pii_values(order))
                             for order, order_id in zip(mapped, ids, strict=True)])

    return store


# -- the shared front half: parse, validate, map -------------------------------------------

def raw_batches(count: int, batch_size: int, prefix: str) -> list[bytes]:
    """Request bodies exactly as a client would send them."""
    bodies = []
    for start in range(0, count, batch_size):
        orders = [synthetic_order(i, prefix=prefix)
                  for i in range(start, min(start + batch_size, count))]
        bodies.append(json.dumps({"orders": orders}, separators=(",", ":")).encode())
    return bodies


def run_round(store: Store, bodies: Sequence[bytes]) -> tuple[float, float]:
    """Parse, validate, map and store each body; returns (total seconds, parse seconds)."""
    parse = 0.0
    started = time.perf_counter()
    for body in bodies:
        t0 = time.perf_counter()
        mapped = [map_order(order) for order in parse_request(body)]
        parse += time.perf_counter() - t0
        store(mapped)
    return time.perf_counter() - started, parse


def count_rows(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--orders", type=int, default=20_000,
                        help="orders stored by each variant (timed), default 20000")
    parser.add_argument("--batch", type=int, default=500, help="orders per request/transaction")
    parser.add_argument("--round-batches", type=int, default=4,
                        help="batches per variant per round (rounds alternate variants)")
    parser.add_argument("--warmup", type=int, default=500, help="untimed orders first")
    args = parser.parse_args(argv)
    clean_environment()

    print(f"ingest benchmark: db={args.db}, {args.orders} orders per variant, batches of "
          f"{args.batch}, {args.round_batches} batches per round, variants interleaved",
          flush=True)
    warmup = raw_batches(args.warmup, args.batch, prefix="901")
    bodies = raw_batches(args.orders, args.batch, prefix="902")
    rounds = [bodies[i:i + args.round_batches]
              for i in range(0, len(bodies), args.round_batches)]
    print(f"generated {len(bodies)} request bodies "
          f"({sum(map(len, bodies)) / len(bodies) / args.batch:.0f} bytes per order)", flush=True)

    with tempfile.TemporaryDirectory(prefix="sv-bench-ingest-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        urls = {v: stack.enter_context(scratch_database(args.db, root / "db", v))
                for v in VARIANTS}
        settings, _ = new_instance(root / "vault", urls["vault"])
        runtime = bootstrap.open_runtime(settings)
        stack.callback(runtime.close)
        plain_engine = make_engine(urls["plaintext"])
        stack.callback(plain_engine.dispose)
        plain_metadata.create_all(plain_engine)
        peer_engine = make_engine(urls["peer"])
        stack.callback(peer_engine.dispose)
        PeerBase.metadata.create_all(peer_engine)
        stores = {"vault": vault_store(runtime), "plaintext": plaintext_store(plain_engine),
                  "peer": peer_store(peer_engine)}

        for variant in VARIANTS:
            run_round(stores[variant], warmup)
        freeze_startup_objects()  # as `sellervault serve` does once it is set up

        totals: dict[str, list[float]] = {v: [] for v in VARIANTS}
        parses: dict[str, list[float]] = {v: [] for v in VARIANTS}
        sizes: list[int] = []
        for number, round_bodies in enumerate(rounds):
            order = VARIANTS[number % 3:] + VARIANTS[:number % 3]
            for variant in order:
                total, parse = run_round(stores[variant], round_bodies)
                totals[variant].append(total)
                parses[variant].append(parse)
            sizes.append(sum(body.count(b'"AmazonOrderId"') for body in round_bodies))
            line = "  ".join(f"{v} {sizes[-1] / totals[v][-1]:7.0f}/s" for v in VARIANTS)
            print(f"round {number + 1:2d}/{len(rounds)}: {line}", flush=True)

        expected = args.orders + args.warmup
        with runtime.store.transaction() as session:
            stored = session.scalar(select(func.count()).select_from(Order).where(
                Order.is_canary.is_(False)))  # (the tenant's canaries are not its orders)
            events = count_events(session)
        checks = {"vault": stored, "plaintext": count_rows(plain_engine, plain_orders),
                  "peer": count_rows(peer_engine, PeerOrder.__table__)}
        for variant, found in checks.items():
            if found != expected:
                raise SystemExit(f"{variant}: {found} rows stored, expected {expected}")
        print(f"stored {expected} orders in each variant; vault security events: {events}")

    per_order = {v: [t / n for t, n in zip(totals[v], sizes, strict=True)] for v in VARIANTS}
    rate = {v: 1 / median(per_order[v]) for v in VARIANTS}
    store_time = {v: [t - p for t, p in zip(totals[v], parses[v], strict=True)]
                  for v in VARIANTS}
    vs_plaintext = median([a / b for a, b in zip(totals["vault"], totals["plaintext"],
                                                  strict=True)])
    vs_peer = median([c / a for a, c in zip(totals["vault"], totals["peer"], strict=True)])
    store_vs_plaintext = median([a / b for a, b in zip(store_time["vault"],
                                                        store_time["plaintext"], strict=True)])
    store_vs_peer = median([c / a for a, c in zip(store_time["vault"], store_time["peer"],
                                                   strict=True)])
    parse_share = median([p / t for p, t in zip(parses["vault"], totals["vault"], strict=True)])

    print()
    for variant in VARIANTS:
        rates = [1 / x for x in per_order[variant]]
        print(f"{LABELS[variant]:<62} {rate[variant]:8.0f} orders/s  (rounds {spread(rates)})")
    print(f"shared parse+validate+map is {parse_share:.0%} of the vault's time")
    verdict_a = "met" if vs_plaintext <= 1.5 else "MISSED"
    verdict_c = "met" if vs_peer >= 3 else "MISSED"
    print(f"vault / plaintext time: {vs_plaintext:.2f}x  (target <= 1.5x: {verdict_a}; "
          f"storage step alone {store_vs_plaintext:.2f}x)")
    print(f"peer / vault time:      {vs_peer:.2f}x  (target >= 3x: {verdict_c}; "
          f"storage step alone {store_vs_peer:.2f}x)")
    emit({"bench": "ingest", "db": args.db, "orders": args.orders,
          "orders_per_s": round(rate["vault"], 1), "vs_plaintext": round(vs_plaintext, 3),
          "vs_peer": round(vs_peer, 3)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
