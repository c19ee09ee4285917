"""Sign-in throughput with the lockout on, against the same server with the lockout off, in
one run (issue 12: "login throughput with lockout on stays within 1.1x of lockout off").

A real SellerVault server (``running_vault``: TLS, the product's own ``build_server``) on
loopback, in this process, on a ``ManualClock`` (each sign-in needs a TOTP step of its own:
the client moves the clock on instead of waiting 30 seconds). One keep-alive client signs the
administrator in, ``POST /api/v1/session``, one request after another. Rounds alternate:

- ``on``: the product as it is: the per-address throttle read from the counters, the
  attempt taken by a conditional UPDATE of the account's row before the password is checked,
  the count cleared after the success (``accounts.lockout``, ``accounts.login_failures``);
- ``off``: the same request path with those calls replaced for the round by a plain read of
  the account's id (nothing counted, nothing cleared, no throttle).

Each request is timed on the client; throughput is requests per second over a round, and the
figure is ``off / on`` of the median per-request times (1.0: the lockout costs nothing;
target at most 1.1). Argon2 dominates either way: the lockout adds one small write.

    .venv/bin/python bench/login_lockout.py [--db sqlite|postgresql] [--requests 40]
        [--rounds 4] [--redis redis://127.0.0.1:6379/0]

The last line is JSON: {"bench": "login_lockout", "db": ..., "counters": "local"|"redis",
"login_ms_lockout_on": a, "login_ms_lockout_off": b, "logins_per_s_on": ...,
"logins_per_s_off": ..., "on_vs_off": a / b, "target_ratio": 1.1}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from _common import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    Server,
    clean_environment,
    emit,
    forget_redis_keys,
    median,
    new_instance,
    running_vault,
    scratch_database,
    spread,
)
from sellervault import bootstrap
from sellervault.accounts import lockout, login_failures
from sellervault.accounts.models import Account
from sellervault.clock import ManualClock
from sellervault.counters.redis import RedisCounters

TARGET_RATIO = 1.1


def _attempt_without_counting(session: Session, email: str, _: datetime) -> lockout.Attempt | None:
    """What a sign-in without any lockout still does: find the active person's account."""
    found = session.scalar(select(Account.id).where(
        Account.email == email, Account.kind == "person", Account.status == lockout.ACTIVE))
    return None if found is None else lockout.Attempt(found, 0, 0)


@contextmanager
def lockout_off() -> Iterator[None]:
    """The lockout's calls replaced for one round (module attributes, as ``login`` looks them
    up), put back afterwards."""
    stubs: list[tuple[Any, str, Callable[..., Any]]] = [
        (lockout, "take_attempt", _attempt_without_counting),
        (lockout, "succeeded", lambda *_: None),
        (login_failures, "refusal_for", lambda *_: None),
        (login_failures, "count_failure", lambda *_: None),
    ]
    saved = [(module, name, getattr(module, name)) for module, name, _ in stubs]
    for module, name, stub in stubs:
        setattr(module, name, stub)
    try:
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def _time_logins(server: Server, count: int) -> list[float]:
    times = []
    with server.client() as client:
        for _ in range(count):
            body = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                    "totp": server.next_totp(server.admin_totp_secret)}
            started = time.perf_counter()
            response = client.post("/session", json=body)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
    return times


def measure(db: str, requests: int, rounds: int, redis: str | None) -> dict[str, object]:
    """Sign-ins with the lockout on and off, in alternate rounds on one server; the figures
    (printed, and returned for the JSON line of this bench or of ``bench/authz.py``)."""
    clock = ManualClock()
    on: list[float] = []
    off: list[float] = []
    with tempfile.TemporaryDirectory() as scratch, \
            scratch_database(db, Path(scratch) / "db", "login_lockout") as url:
        settings, initialized = new_instance(Path(scratch) / "data", url)
        if redis:
            settings = settings.model_copy(update={"redis_url": SecretStr(redis)})
        runtime = bootstrap.open_runtime(settings, clock)
        try:
            with running_vault(runtime, initialized) as server:
                _time_logins(server, 5)  # warm: connection, caches, keys
                for round_number in range(rounds * 2):
                    if round_number % 2 == 0:
                        on.extend(_time_logins(server, requests))
                    else:
                        with lockout_off():
                            off.extend(_time_logins(server, requests))
        finally:
            if isinstance(runtime.counters, RedisCounters) and redis:
                forget_redis_keys(redis, runtime.counters.prefix)
            runtime.close()
    a, b = median(on) * 1e3, median(off) * 1e3
    print(f"sign-in, lockout on: median {a:.1f} ms ({len(on)} requests, "
          f"{spread([t * 1e3 for t in on])} ms)")
    print(f"sign-in, lockout off: median {b:.1f} ms ({len(off)} requests, "
          f"{spread([t * 1e3 for t in off])} ms)")
    print(f"lockout on / off: {a / b:.3f} (target at most {TARGET_RATIO})")
    return {"counters": "redis" if redis else "local",
            "login_ms_lockout_on": round(a, 2), "login_ms_lockout_off": round(b, 2),
            "logins_per_s_on": round(1e3 / a, 1), "logins_per_s_off": round(1e3 / b, 1),
            "on_vs_off": round(a / b, 3), "target_ratio": TARGET_RATIO}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--redis", default=None, help="count in this Redis (default: local)")
    args = parser.parse_args()
    clean_environment()
    figures = measure(args.db, args.requests, args.rounds, args.redis)
    emit({"bench": "login_lockout", "db": args.db, **figures})


if __name__ == "__main__":
    main()
