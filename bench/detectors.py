"""Detectors: what the monitoring subscribers add to a request, against the same server
with them detached, in one run.

A real SellerVault server (``running_vault``: TLS, the product's own ``build_server``, the
detectors attached by its start-up as in production) on loopback, in this process; one
keep-alive client sends ``GET /api/v1/tenants/{t}/orders/{id}`` as an analyst service (a
masked read: authentication, the decision, the read, a security event, which every
subscriber then receives). Rounds alternate between the detectors attached and detached
(unsubscribed for the round), so both arms see the same machine; every request is timed on
the client and the figure is the difference of the medians. Then the detectors' own work
per event, timed alone on a denied event (the path that counts in the shared counters, here
in-process).

    .venv/bin/python bench/detectors.py [--db sqlite|postgresql] [--requests 400] [--rounds 6]

The last line is JSON: {"bench": "detectors", "db": ..., "request_us_with": w,
"request_us_without": o, "detectors_add_us": w - o, "detector_call_us": d, "target_us": 50}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import (
    clean_environment,
    emit,
    median,
    new_instance,
    running_vault,
    scratch_database,
    spread,
    time_gets,
)
from sellervault import bootstrap
from sellervault.access.actions import Action
from sellervault.audit.events import Actor, Channel, Outcome, SecurityEvent
from sellervault.audit.subscribers import CommittedEvent
from sellervault.monitoring import detectors
from sellervault.records.synthetic import synthetic_orders
from sellervault.runtime import Runtime

TENANT = "bench-seller"
TARGET_US = 50


def _detach(runtime: Runtime) -> None:
    for subscription in runtime.audit.subscribers.subscriptions:
        if subscription.name == "detectors":
            runtime.audit.subscribers.unsubscribe(subscription)


def _time_detector(runtime: Runtime, count: int) -> list[float]:
    """The detectors' own work on a denied event (counted; below the threshold: each event
    comes from a principal of its own)."""
    detector = detectors.Detectors(runtime)
    times = []
    for n in range(count):
        event = SecurityEvent(Action.ORDERS_READ, Outcome.DENIED,
                              Actor(Channel.API, actor_id=f"acc_{n}"))
        committed = CommittedEvent(n + 1, "2026-12-05T10:00:00.000000Z", event)
        started = time.perf_counter()
        detector(committed)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    clean_environment()
    attached: list[float] = []
    detached: list[float] = []
    with tempfile.TemporaryDirectory() as scratch, \
            scratch_database(args.db, Path(scratch) / "db", "detectors") as url:
        settings, initialized = new_instance(Path(scratch) / "data", url)
        runtime = bootstrap.open_runtime(settings)
        try:
            with running_vault(runtime, initialized) as server:
                admin = server.admin_token()
                ingest = server.create_service(admin, "bench ingest",
                                               [{"role": "ingest", "tenant": TENANT}])
                analyst = server.create_service(admin, "bench analyst",
                                                [{"role": "analyst", "tenant": TENANT}])
                orders = list(synthetic_orders(50, seed=7))
                with server.client(ingest) as client:
                    client.post(f"/tenants/{TENANT}/orders",
                                json={"orders": orders}).raise_for_status()
                paths = [f"/tenants/{TENANT}/orders/{o['AmazonOrderId']}" for o in orders]
                with server.client(analyst) as client:
                    time_gets(client, paths, 50)  # warm
                    for round_number in range(args.rounds * 2):
                        on = round_number % 2 == 0
                        if not on:
                            _detach(runtime)
                        times = time_gets(client, paths, args.requests)
                        (attached if on else detached).extend(times)
                        if not on:
                            detectors.attach(runtime)
            call = _time_detector(runtime, 2000)
        finally:
            runtime.close()
    w, o = median(attached) * 1e6, median(detached) * 1e6
    d = median(call) * 1e6
    print(f"request, detectors attached: median {w:.0f} us ({len(attached)} requests, "
          f"{spread([t * 1e6 for t in attached])} us)")
    print(f"request, detectors detached: median {o:.0f} us ({len(detached)} requests)")
    print(f"the detectors add {w - o:.1f} us per request at the median (target < {TARGET_US})")
    print(f"a detector call on a denied event: median {d:.1f} us")
    emit({"bench": "detectors", "db": args.db, "request_us_with": round(w, 1),
          "request_us_without": round(o, 1), "detectors_add_us": round(w - o, 1),
          "detector_call_us": round(d, 1), "target_us": TARGET_US})


if __name__ == "__main__":
    main()
