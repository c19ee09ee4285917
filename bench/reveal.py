"""Reveal: authenticated PII reveals over HTTPS vs a bare FastAPI endpoint on the same TLS setup.

Two servers run side by side in this process, each a uvicorn server made by the product's
``build_server`` (the TLS-only config: TLS 1.2+, Mozilla intermediate ciphers, the
instance's own certificate), on loopback:

- ``reveal``: SellerVault itself. Each request is
  ``GET /api/v1/tenants/{t}/orders/{id}`` with ``X-Access-Purpose: fulfillment`` by a person
  holding ``pii-reader`` on the tenant: bearer-token authentication, two Cedar decisions,
  the order's data key unwrapped, both PII records decrypted, and a hash-chained security
  event committed before the response.
- ``bare``: the same ``build_server`` config with its app swapped for a bare FastAPI app (set
  up as SellerVault's is: FastAPI's own telemetry off) whose one ``async`` endpoint returns a
  fixed JSON body of the same size as a reveal.

The load comes from a separate process (multiprocessing, spawn) running a few threads, each
with its own keep-alive ``httpx`` client; rounds are bounded in time and alternate between
the two servers. Requests per second are medians over rounds; the server's CPU time per
request (this process's CPU during a round / requests served) is reported too, since it does
not depend on how fast the load generator is, and so is how busy the load generator was (near
100% of a core means that side, not the server, set the pace).

    .venv/bin/python bench/reveal.py [--seconds 5] [--concurrency 4] [--rounds 3]

The last line is JSON: {"bench": "reveal", "db": "sqlite", "reveals_per_s": r,
"bare_per_s": b, "vs_bare": r/b, "cpu_vs_bare": c}, where c is the server CPU per reveal
divided by the server CPU per bare request: the throughput ratio is set by the load generator
on the bare side (near a whole core here), so it can hide a slower server; c cannot.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
from fastapi import FastAPI, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from _common import (
    clean_environment,
    emit,
    free_socket,
    median,
    new_instance,
    running_vault,
    scratch_database,
    serve_in_thread,
    spread,
)
from sellervault import bootstrap
from sellervault.access.actions import Action
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel
from sellervault.audit.models import EventRow
from sellervault.records import service as records
from sellervault.records.spapi import map_order, parse_request
from sellervault.records.synthetic import synthetic_orders
from sellervault.runtime import Runtime
from sellervault.web.app import TELEMETRY_OFF
from sellervault.web.server import build_server, freeze_startup_objects

TENANT = "bench-seller"
PURPOSE = "fulfillment"
READER_EMAIL = "rita.reader@example.test"


@dataclass(frozen=True)
class Target:
    base_url: str
    paths: list[str]
    headers: dict[str, str]


# -- the load generator (runs in its own process) ------------------------------------------

def _worker(client: httpx.Client, target: Target, deadline: float, seed: int,
            tally: list[int]) -> None:
    rng = random.Random(seed)
    done = errors = 0
    while time.perf_counter() < deadline:
        try:
            response = client.get(rng.choice(target.paths))
            if response.status_code == 200:
                done += 1
            else:
                errors += 1
        except httpx.HTTPError:
            errors += 1
    tally[0] += done
    tally[1] += errors


def load_generator(conn: Connection, targets: dict[str, Target], ca_file: str,
                   threads: int) -> None:
    """Keep-alive clients per target, then serve ("run", target, seconds) commands."""
    verify = ssl.create_default_context(cafile=ca_file)
    clients = {
        name: [httpx.Client(base_url=t.base_url, headers=t.headers, verify=verify, timeout=60)
               for _ in range(threads)]
        for name, t in targets.items()
    }
    for name, pool in clients.items():
        for client in pool:  # connect and handshake before anything is timed
            client.get(targets[name].paths[0]).raise_for_status()
    conn.send("ready")
    seed = 0
    while True:
        command = conn.recv()
        if command[0] == "stop":
            break
        _, name, seconds = command
        tally = [0, 0]
        cpu_started = time.process_time()
        started = time.perf_counter()
        deadline = started + seconds
        workers = []
        for client in clients[name]:
            seed += 1
            workers.append(threading.Thread(target=_worker,
                                             args=(client, targets[name], deadline, seed, tally)))
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        conn.send((tally[0], tally[1], time.perf_counter() - started,
                   time.process_time() - cpu_started))
    for pool in clients.values():
        for client in pool:
            client.close()


# -- the servers -----------------------------------------------------------------------------

def bare_app(body: bytes) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None,
                  telemetry=TELEMETRY_OFF)  # the same FastAPI set-up as SellerVault's

    @app.get("/bare")
    async def bare() -> Response:
        return Response(content=body, media_type="application/json")

    return app


def same_size_body(size: int) -> bytes:
    frame = b'{"order":""}'
    body = b'{"order":"' + b"x" * (size - len(frame)) + b'"}'
    assert len(body) == size
    return body


def seed_orders(runtime: Runtime, count: int) -> list[str]:
    auditor = Auditor(runtime.audit, Actor(channel=Channel.CLI, source_ip="local"))
    ids = []
    raw = list(synthetic_orders(count, prefix="903"))
    for start in range(0, count, 500):
        body = json.dumps({"orders": raw[start:start + 500]}).encode()
        mapped = [map_order(o) for o in parse_request(body)]
        records.ingest(runtime, auditor, TENANT, mapped)
        ids += [m.amazon_order_id for m in mapped]
    return ids


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each round")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="load-generator threads (one keep-alive client each)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument("--orders", type=int, default=2000, help="orders in the tenant")
    args = parser.parse_args(argv)
    clean_environment()
    print(f"reveal benchmark: db={args.db}, {args.rounds} rounds x {args.seconds:g}s per "
          f"server, {args.concurrency} client threads in a separate process", flush=True)

    with tempfile.TemporaryDirectory(prefix="sv-bench-reveal-") as tmp, \
            scratch_database(args.db, Path(tmp) / "db", "reveal") as url:
        settings, initialized = new_instance(Path(tmp) / "vault", url)
        # Every detector on; the reader revealing thousands of buyers raises its alerts
        # (retrieval-volume, request-rate) but is not disabled, or the rounds would measure
        # refusals (SELLERVAULT_AUTO_LOCK=false: the alert without the automatic response).
        runtime = bootstrap.open_runtime(settings.model_copy(update={"auto_lock": False}))
        try:
            ids = seed_orders(runtime, args.orders)
            with running_vault(runtime, initialized) as vault:
                admin = vault.admin_token()
                reader, _ = vault.create_person(admin, READER_EMAIL, "Rita Reader",
                                                [{"role": "pii-reader", "tenant": TENANT}])
                headers = {"Authorization": f"Bearer {reader}", "X-Access-Purpose": PURPOSE}
                with vault.client(reader, **{"X-Access-Purpose": PURPOSE}) as client:
                    sample = client.get(f"/tenants/{TENANT}/orders/{ids[0]}")
                sample.raise_for_status()
                if sample.json()["pii"] != "revealed":
                    raise SystemExit("the sample request did not reveal PII")
                size = len(sample.content)
                print(f"{len(ids)} orders in tenant {TENANT}; a reveal response is {size} bytes "
                      "(the bare endpoint returns a fixed body of that size)", flush=True)

                sock = free_socket()
                bare_server = build_server(runtime, "127.0.0.1", sock.getsockname()[1])
                bare_server.config.app = bare_app(same_size_body(size))  # same TLS config
                with serve_in_thread(bare_server, sock):
                    freeze_startup_objects()  # as `sellervault serve` does once it is set up
                    bare_url = f"https://127.0.0.1:{sock.getsockname()[1]}"
                    targets = {
                        "reveal": Target(vault.base_url + "/api/v1",
                                         [f"/tenants/{TENANT}/orders/{i}" for i in ids],
                                         headers),
                        "bare": Target(bare_url, ["/bare"], {}),
                    }
                    rates, cpu, served, events = run_rounds(runtime, targets,
                                                            str(vault.ca_file), args)
        finally:
            runtime.close()

    reveal_rate, bare_rate = median(rates["reveal"]), median(rates["bare"])
    vs_bare = median([r / b for r, b in zip(rates["reveal"], rates["bare"], strict=True)])
    print()
    for name in ("reveal", "bare"):
        print(f"{name:<7} {median(rates[name]):8.0f} req/s  (rounds {spread(rates[name])}), "
              f"server CPU {median(cpu[name]) * 1e6:6.0f} us/request, load generator busy "
              f"{median(cpu[name + '-client']):.0%} of a core")
    print(f"{served['reveal']} reveals served, {events} reveal events written "
          f"({'one per reveal' if events == served['reveal'] else 'MISMATCH'})")
    verdict = "met" if vs_bare >= 0.5 else "MISSED"
    cpu_vs_bare = median(cpu["reveal"]) / median(cpu["bare"])
    print(f"reveals / bare: {vs_bare:.2f}  (target >= 0.50: {verdict}); server CPU per request "
          f"reveal/bare: {cpu_vs_bare:.1f}x")
    emit({"bench": "reveal", "db": args.db, "reveals_per_s": round(reveal_rate, 1),
          "bare_per_s": round(bare_rate, 1), "vs_bare": round(vs_bare, 3),
          "cpu_vs_bare": round(cpu_vs_bare, 2)})
    return 0


def run_rounds(runtime: Runtime, targets: dict[str, Target], ca_file: str,
               args: argparse.Namespace) -> tuple[dict[str, list[float]],
                                                   dict[str, list[float]], dict[str, int], int]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    generator = context.Process(target=load_generator,
                                args=(child, targets, ca_file, args.concurrency), daemon=True)
    generator.start()
    if not parent.poll(60) or parent.recv() != "ready":
        raise SystemExit("the load generator did not start")
    with runtime.store.transaction() as session:
        events_before = _reveal_events(session)
    rates: dict[str, list[float]] = {"reveal": [], "bare": []}
    cpu: dict[str, list[float]] = {"reveal": [], "bare": [], "reveal-client": [],
                                   "bare-client": []}
    served = {"reveal": 0, "bare": 0}
    try:
        for number in range(args.rounds):
            order = ("bare", "reveal") if number % 2 == 0 else ("reveal", "bare")
            for name in order:
                cpu_before = time.process_time()
                parent.send(("run", name, args.seconds))
                done, errors, elapsed, client_cpu = parent.recv()
                cpu_used = time.process_time() - cpu_before
                if errors:
                    raise SystemExit(f"{name}: {errors} failed requests")
                rates[name].append(done / elapsed)
                cpu[name].append(cpu_used / max(done, 1))
                cpu[name + "-client"].append(client_cpu / elapsed)
                served[name] += done
            print(f"round {number + 1}/{args.rounds}: reveal {rates['reveal'][-1]:7.0f}/s  "
                  f"bare {rates['bare'][-1]:7.0f}/s", flush=True)
    finally:
        parent.send(("stop",))
        generator.join(timeout=30)
    with runtime.store.transaction() as session:
        events = _reveal_events(session) - events_before
    return rates, cpu, served, events


def _reveal_events(session: Session) -> int:
    """The ``orders:reveal`` events (the detectors' alerts and the jobs' runs are others)."""
    return session.scalar(select(func.count()).select_from(EventRow).where(
        EventRow.action == Action.ORDERS_REVEAL.value)) or 0


if __name__ == "__main__":
    sys.exit(main())
