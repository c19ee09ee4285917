"""Sign-in throughput with the lockout on, against the same sign-in with the lockout off, in
one run (target: on / off within 1.1).

The service's own ``accounts.login`` (password, TOTP, session, events: everything but HTTP)
on a fresh instance whose runtime runs on a ``ManualClock`` moved a TOTP step per sign-in, so
every sign-in is a real success with a fresh code and nobody waits. Rounds alternate between
the real lockout (``accounts.lockout``: the attempt taken by a conditional UPDATE and
committed before the password is checked, cleared on success; the per-address count read in
the shared counters) and a stub that only finds the account (no count, no clear, no
per-address read), so both see the same machine state. Argon2 dominates both; the figure says
what the lockout's writes add to it.

    .venv/bin/python bench/login_lockout.py [--db sqlite|postgresql] [--logins 30] [--rounds 4]

The last line is JSON: {"bench": "login_lockout", "db": ..., "logins_per_s_on": on,
"logins_per_s_off": off, "ratio": median time with the lockout / without,
"target_ratio": 1.1}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pyotp
from sqlalchemy import select
from sqlalchemy.orm import Session

from _common import (
    ADMIN_EMAIL,
    ADMIN_NAME,
    ADMIN_PASSWORD,
    clean_environment,
    emit,
    median,
    scratch_database,
    settings_for,
)
from sellervault import bootstrap
from sellervault.accounts import lockout, login_failures
from sellervault.accounts import service as accounts
from sellervault.accounts.models import Account
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel
from sellervault.clock import ManualClock
from sellervault.runtime import Runtime

TARGET_RATIO = 1.1


def _found_only(session: Session, email: str, now: datetime) -> lockout.Attempt | None:
    """The lockout off: the account is found as the real attempt finds it, nothing counted."""
    found = session.scalar(select(Account.id).where(
        Account.email == email, Account.kind == "person", Account.status == lockout.ACTIVE))
    return None if found is None else lockout.Attempt(found, 0)


@contextmanager
def _lockout_off() -> Iterator[None]:
    saved = (lockout.take_attempt, lockout.succeeded, login_failures.refusal_for)
    lockout.take_attempt = _found_only  # type: ignore[assignment]
    lockout.succeeded = lambda *_: None  # type: ignore[assignment]
    login_failures.refusal_for = lambda *_: None  # type: ignore[assignment]
    try:
        yield
    finally:
        lockout.take_attempt, lockout.succeeded, login_failures.refusal_for = saved


def _time_logins(runtime: Runtime, secret: str, count: int) -> list[float]:
    clock = runtime.clock
    assert isinstance(clock, ManualClock)
    auditor = Auditor(runtime.audit, Actor(Channel.API, source_ip="198.51.100.9"))
    times = []
    for _ in range(count):
        clock.advance(30)  # a fresh TOTP step for each sign-in
        code = pyotp.TOTP(secret).at(clock.timestamp())
        started = time.perf_counter()
        accounts.login(runtime, auditor, email=ADMIN_EMAIL, password=ADMIN_PASSWORD,
                       totp_code=code)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--logins", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    clean_environment()
    on: list[float] = []
    off: list[float] = []
    clock = ManualClock()
    with tempfile.TemporaryDirectory() as scratch, \
            scratch_database(args.db, Path(scratch) / "db", "login_lockout") as url:
        settings = settings_for(Path(scratch) / "data", url)
        initialized = bootstrap.init(settings, admin_email=ADMIN_EMAIL, admin_name=ADMIN_NAME,
                                     admin_password=ADMIN_PASSWORD, clock=clock)
        runtime = bootstrap.open_runtime(settings, clock)
        try:
            _time_logins(runtime, initialized.totp_secret, 5)  # warm: keys, caches
            for round_number in range(args.rounds * 2):
                if round_number % 2 == 0:
                    on.extend(_time_logins(runtime, initialized.totp_secret, args.logins))
                else:
                    with _lockout_off():
                        off.extend(_time_logins(runtime, initialized.totp_secret, args.logins))
        finally:
            runtime.close()
    t_on, t_off = median(on), median(off)
    print(f"sign-in, lockout on:  median {t_on * 1e3:.1f} ms ({len(on)} sign-ins)")
    print(f"sign-in, lockout off: median {t_off * 1e3:.1f} ms ({len(off)} sign-ins)")
    print(f"on / off: {t_on / t_off:.3f} (target <= {TARGET_RATIO})")
    emit({"bench": "login_lockout", "db": args.db, "logins_per_s_on": round(1 / t_on, 2),
          "logins_per_s_off": round(1 / t_off, 2), "ratio": round(t_on / t_off, 3),
          "target_ratio": TARGET_RATIO})


if __name__ == "__main__":
    main()
