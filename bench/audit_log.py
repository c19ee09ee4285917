"""The security log: what Merkle checkpoints cost the writers, and how fast it is verified.

Appending: the product's writer (``Auditor.record``: HMAC chain, head row, one event per
request) with the checkpoint job run every 1,000 events, as the trigger runs it, against
plain INSERTs of the same rows into a table of the same shape with no chain and no
checkpoints, in one run, on one database. Rounds alternate between the two arms; each
round writes ``--events`` events, one per transaction ("single") and then 100 per
transaction ("batched"). The figure is each arm's time per event, and the ratio (target:
at most 2).

Verifying: ``audit verify`` over the log (every MAC, link and Merkle root, the checkpoints)
against ``hashlib.sha256`` over the same bytes (every event's canonical body, as one pass),
in one run. The figure is verify's throughput as a fraction of sha256's (target: at least
0.25). Two floors are measured beside it, as fractions of sha256 too, to show what any
verifier must pay: ``fetch_floor``, the database driver alone handing over every event row
(``SELECT`` through the raw DBAPI cursor, nothing decoded further), and ``crypto_floor``,
the hashing a verification cannot skip (per event an HMAC-SHA256 of its body and the
previous MAC, its RFC 6962 leaf hash, one interior node hash) in the tightest Python loop.

    .venv/bin/python bench/audit_log.py [--db sqlite|postgresql] [--events 2000] [--rounds 3]

The last line is JSON: {"bench": "audit_log", "db": ..., "single_vs_plain": a,
"batched_vs_plain": b, "verify_vs_sha256": v, "append_target": 2, "verify_target": 0.25,
...}.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Column, MetaData, Table, text

from _common import clean_environment, emit, median, new_instance, scratch_database
from sellervault import bootstrap
from sellervault.access.actions import Action
from sellervault.audit import checkpoints, verification
from sellervault.audit.auditor import Auditor
from sellervault.audit.chain import CHAINED_FIELDS, event_body
from sellervault.audit.events import Actor, Channel, Outcome
from sellervault.audit.models import EventRow
from sellervault.runtime import Runtime

BATCH = 100
FIELDS = {"tenant_id": "bench-tenant", "status": 200}


def _plain_table(runtime: Runtime) -> Table:
    """A table shaped like the log's, with no chain: the baseline's rows go here."""
    metadata = MetaData()
    columns = [Column(c.name, c.type, primary_key=c.primary_key, autoincrement=False)
               for c in EventRow.__table__.columns]
    table = Table("bench_plain_events", metadata, *columns)
    metadata.create_all(runtime.store.engine)
    return table


def _append(runtime: Runtime, auditor: Auditor, count: int, per_transaction: int,
            since_checkpoint: list[int]) -> float:
    started = time.perf_counter()
    for first in range(0, count, per_transaction):
        with runtime.store.transaction() as session:
            for _ in range(min(per_transaction, count - first)):
                auditor.record(session, Action.ORDERS_READ, Outcome.SUCCESS, **FIELDS)
        since_checkpoint[0] += min(per_transaction, count - first)
        if since_checkpoint[0] >= checkpoints.EVENTS_PER_CHECKPOINT:
            checkpoints.write_checkpoint(runtime)
            since_checkpoint[0] = 0
    return time.perf_counter() - started


def _plain(runtime: Runtime, table: Table, rows: list[dict[str, Any]], count: int,
           per_transaction: int, next_seq: list[int]) -> float:
    started = time.perf_counter()
    for first in range(0, count, per_transaction):
        with runtime.store.engine.begin() as connection:
            batch = []
            for row in rows[first:first + per_transaction]:
                batch.append({**row, "seq": next_seq[0]})
                next_seq[0] += 1
            for row in batch:  # one INSERT per event, as the writer does
                connection.execute(table.insert(), row)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    clean_environment()
    timings: dict[str, list[float]] = {"single": [], "single_plain": [], "batched": [],
                                       "batched_plain": []}
    with tempfile.TemporaryDirectory() as scratch, \
            scratch_database(args.db, Path(scratch) / "db", "audit_log") as url:
        settings, _ = new_instance(Path(scratch) / "data", url)
        runtime = bootstrap.open_runtime(settings)
        try:
            auditor = Auditor(runtime.audit, Actor(Channel.API, actor_id="acc_bench",
                                                   source_ip="203.0.113.9"))
            table = _plain_table(runtime)
            since, next_seq = [0], [1]
            _append(runtime, auditor, 200, 1, since)  # warm: keys, statements
            with runtime.store.engine.connect() as connection:
                template = next(dict(r._mapping) for r in connection.execute(
                    text("SELECT * FROM security_events ORDER BY seq DESC LIMIT 1")))
            rows = [dict(template) for _ in range(args.events)]
            for _ in range(args.rounds):
                for label, per in (("single", 1), ("batched", BATCH)):
                    timings[label].append(
                        _append(runtime, auditor, args.events, per, since) / args.events)
                    timings[label + "_plain"].append(
                        _plain(runtime, table, rows, args.events, per, next_seq) / args.events)
            checkpoints.write_checkpoint(runtime)
            with runtime.store.engine.connect() as connection:
                bodies = [event_body({n: r._mapping[n] for n in CHAINED_FIELDS}) for r in
                          connection.execute(text("SELECT * FROM security_events"))]
            started = time.perf_counter()
            result = verification.verify(runtime.store, runtime.keyring,
                                         checkpoint_file=settings.checkpoint_file)
            verify_seconds = time.perf_counter() - started
            assert result.ok, result
            sha_passes = []
            for _ in range(21):  # one pass is a millisecond: the median of many
                started = time.perf_counter()
                digest = hashlib.sha256()
                for body in bodies:
                    digest.update(body)
                sha_passes.append(time.perf_counter() - started)
            sha_seconds = median(sha_passes)
            fetch_seconds = _fetch_floor(runtime)
            crypto_seconds = _crypto_floor(bodies)
        finally:
            runtime.close()
    figures = {name: median(values) * 1e6 for name, values in timings.items()}
    single = figures["single"] / figures["single_plain"]
    batched = figures["batched"] / figures["batched_plain"]
    total = sum(len(b) for b in bodies)
    verify_rate, sha_rate = total / verify_seconds, total / sha_seconds
    print(f"append, one per transaction: {figures['single']:.0f} us/event vs plain "
          f"{figures['single_plain']:.0f} us: {single:.2f}x (target at most 2)")
    print(f"append, {BATCH} per transaction: {figures['batched']:.0f} us/event vs plain "
          f"{figures['batched_plain']:.0f} us: {batched:.2f}x (target at most 2)")
    fetch_floor, crypto_floor = (total / fetch_seconds / sha_rate,
                                 total / crypto_seconds / sha_rate)
    print(f"verify: {len(bodies)} events, {result.checkpoints} checkpoints, "
          f"{verify_rate / 1e6:.2f} MB/s vs sha256 {sha_rate / 1e6:.0f} MB/s: "
          f"{verify_rate / sha_rate:.4f} (target at least 0.25); floors: fetching the rows "
          f"alone {fetch_floor:.4f}, the unavoidable hashing alone {crypto_floor:.4f}")
    emit({"bench": "audit_log", "db": args.db, "events": len(bodies),
          "single_us": round(figures["single"], 1),
          "single_plain_us": round(figures["single_plain"], 1),
          "batched_us": round(figures["batched"], 1),
          "batched_plain_us": round(figures["batched_plain"], 1),
          "single_vs_plain": round(single, 3), "batched_vs_plain": round(batched, 3),
          "verify_mb_s": round(verify_rate / 1e6, 3), "sha256_mb_s": round(sha_rate / 1e6, 1),
          "verify_vs_sha256": round(verify_rate / sha_rate, 4),
          "fetch_floor_vs_sha256": round(fetch_floor, 4),
          "crypto_floor_vs_sha256": round(crypto_floor, 4), "append_target": 2,
          "verify_target": 0.25})


def _fetch_floor(runtime: Runtime) -> float:
    """The median time for the driver alone to hand over every event row."""
    passes = []
    for _ in range(5):
        raw = runtime.store.engine.raw_connection()
        try:
            cursor = raw.cursor()
            started = time.perf_counter()
            cursor.execute("SELECT * FROM security_events ORDER BY seq")
            cursor.fetchall()
            passes.append(time.perf_counter() - started)
            cursor.close()
        finally:
            raw.close()
    return median(passes)


def _crypto_floor(bodies: list[bytes]) -> float:
    """The median time of the hashing no verification can skip, in the tightest loop."""
    key, previous = b"k" * 32, b"0" * 64
    passes = []
    for _ in range(5):
        started = time.perf_counter()
        for body in bodies:
            previous = hmac.digest(key, previous + body, "sha256").hex().encode()
            leaf = hashlib.sha256(b"\x00" + body).digest()
            hashlib.sha256(b"\x01" + leaf + leaf).digest()
        passes.append(time.perf_counter() - started)
    return median(passes)


if __name__ == "__main__":
    main()
