"""Authorization: what the decision adds to a request, against the same request path with the
decision stubbed out, in one run.

A real SellerVault server (``running_vault``: TLS, the product's own ``build_server``) on
loopback, in this process; one keep-alive client sends ``GET
/api/v1/tenants/{t}/orders/{id}`` as an analyst service (a masked read: authentication, the
decision, the read, a security event). Rounds alternate between the real decision
(``access.decisions.decide``) and a stub that allows (the guard's reference to ``decide``
swapped for the round), so both see the same machine state; each request is timed on the
client, and the figure is the difference of the medians.

The decision is also timed alone: ``cached`` (the same principal and question, as on a
client's repeated requests) and ``uncached`` (a new principal each time: a Cedar evaluation).
Then sign-in throughput with the lockout on against off (``login_lockout.measure``: its own
server, alternate rounds), the issue's second figure, so one run shows both.

    .venv/bin/python bench/authz.py [--db sqlite|postgresql] [--requests 400] [--rounds 6]
        [--login-requests 60] [--redis redis://127.0.0.1:6379/0]

The last line is JSON: {"bench": "authz", "db": ..., "request_us_with_decision": w,
"request_us_stubbed": s, "decision_adds_us": w - s, "vs_stubbed": w / s,
"decision_cached_us": c, "decision_uncached_us": u, "target_us": 100,
"login_on_vs_off": r, "login_target_ratio": 1.1}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import login_lockout
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
from sellervault.access.decisions import Decision, decide
from sellervault.access.roles import Grant, Principal, Role
from sellervault.records.synthetic import synthetic_orders
from sellervault.web import context

TENANT = "bench-seller"
TARGET_US = 100


def _allow(*_: object) -> Decision:
    return Decision.ALLOWED


def _time_decisions(count: int, cached: bool) -> list[float]:
    grants = (Grant(Role.PII_READER, TENANT), Grant(Role.ANALYST, "other-seller"))
    same = Principal("acc_bench", "service", grants)
    times = []
    for n in range(count):
        principal = same if cached else Principal(f"acc_bench_{n}_{time.perf_counter_ns()}",
                                                  "service", grants)
        started = time.perf_counter()
        decision = decide(principal, Action.ORDERS_REVEAL, TENANT, "fulfillment")
        times.append(time.perf_counter() - started)
        assert decision is Decision.ALLOWED
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--login-requests", type=int, default=60)
    parser.add_argument("--redis", default=None,
                        help="the lockout's counters in this Redis (default: local)")
    args = parser.parse_args()
    clean_environment()
    with tempfile.TemporaryDirectory() as scratch, \
            scratch_database(args.db, Path(scratch) / "db", "authz") as url:
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
                with_decision: list[float] = []
                stubbed: list[float] = []
                with server.client(analyst) as client:
                    time_gets(client, paths, 50)  # warm: connection, caches, keys
                    for round_number in range(args.rounds * 2):
                        real = round_number % 2 == 0
                        context.decide = decide if real else _allow  # type: ignore[assignment]
                        times = time_gets(client, paths, args.requests)
                        (with_decision if real else stubbed).extend(times)
                    context.decide = decide  # type: ignore[assignment]
        finally:
            runtime.close()
    cached = _time_decisions(5000, cached=True)
    uncached = _time_decisions(500, cached=False)
    w, s = median(with_decision) * 1e6, median(stubbed) * 1e6
    print(f"request with the decision: median {w:.0f} us ({len(with_decision)} requests, "
          f"{spread([t * 1e6 for t in with_decision])} us)")
    print(f"request, decision stubbed: median {s:.0f} us ({len(stubbed)} requests)")
    print(f"the decision adds {w - s:.1f} us per request at the median (target < {TARGET_US})")
    print(f"decide() alone: cached {median(cached) * 1e6:.2f} us, "
          f"uncached (Cedar) {median(uncached) * 1e6:.1f} us")
    login = login_lockout.measure(args.db, args.login_requests, 4, args.redis)
    emit({"bench": "authz", "db": args.db, "request_us_with_decision": round(w, 1),
          "request_us_stubbed": round(s, 1), "decision_adds_us": round(w - s, 1),
          "vs_stubbed": round(w / s, 3), "decision_cached_us": round(median(cached) * 1e6, 2),
          "decision_uncached_us": round(median(uncached) * 1e6, 1), "target_us": TARGET_US,
          "login_on_vs_off": login["on_vs_off"], "login_target_ratio": login["target_ratio"]})


if __name__ == "__main__":
    main()
