"""Import memory: peak RSS of ``sellervault import`` streaming N orders to a running server.

A JSON-lines file of N synthetic SP-API orders is written one line at a time (never held in
memory), a SellerVault server runs on loopback (the product's ``build_server``, TLS), an
``ingest`` service account logs in with ``sellervault login --api-key-stdin`` (its CLI
configuration in a temporary ``XDG_CONFIG_HOME``), and ``sellervault import FILE --tenant T
--quiet`` runs as a subprocess. Its peak resident set size is the larger of
the ``ru_maxrss`` the kernel reports for it when it is reaped (``os.wait4``, the per-child
form of ``getrusage(RUSAGE_CHILDREN)``, taken by a small launcher process: see LAUNCHER) and
the ``VmHWM`` polled from ``/proc`` while it runs. The baseline beside it is the same CLI
doing nothing (``sellervault --help``): what the interpreter and imports cost before any
order is read.
RSS is also sampled at each tenth of the file, to show it stays flat as the file goes by.

    .venv/bin/python bench/import_memory.py [--orders 1000000] [--db sqlite]

The last line is JSON: {"bench": "import_memory", "orders": N, "peak_rss_mb": m,
"orders_per_s": r}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select

from _common import clean_environment, emit, new_instance, running_vault, scratch_database
from sellervault import bootstrap
from sellervault.records.models import Order
from sellervault.records.synthetic import synthetic_order

TENANT = "bench-import"
CLI = Path(sys.executable).with_name("sellervault")
LIMIT_MB = 300


def write_orders(path: Path, count: int) -> int:
    """One order per line, generated and written one at a time."""
    with path.open("w", encoding="utf-8") as handle:
        for index in range(count):
            handle.write(json.dumps(synthetic_order(index, prefix="904"), separators=(",", ":")))
            handle.write("\n")
    return path.stat().st_size


def _status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _file_position(pid: int, path: Path) -> int | None:
    """How far the process has read ``path`` (from /proc/PID/fdinfo), if it has it open."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                with open(f"/proc/{pid}/fdinfo/{fd}") as handle:
                    for line in handle:
                        if line.startswith("pos:"):
                            return int(line.split()[1])
    except OSError:
        return None
    return None


# Runs the measured command from a small interpreter and reports the command's own rusage.
# Spawning it straight from this (large) process would not do: on exec, Linux seeds a child's
# ru_maxrss with the high-water RSS of the address space it was spawned from, so the figure
# would include this process (and the server in it). A ~10 MB launcher keeps that floor low.
LAUNCHER = """
import os, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ,
                     file_actions=[(os.POSIX_SPAWN_DUP2, 2, 1)])
print(pid, flush=True)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, flush=True)
"""


def launch(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    """Start ``argv`` under the launcher; returns the launcher and the command's pid."""
    launcher = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, *argv], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert launcher.stdout is not None
    return launcher, int(launcher.stdout.readline())


def finish(launcher: subprocess.Popen[str]) -> tuple[int, int, str]:
    """Wait for the launcher; returns (exit code, ru_maxrss KiB, the command's output)."""
    out, err = launcher.communicate()
    if launcher.returncode != 0 or not out.split():
        raise SystemExit(f"launcher failed: {err.strip()[-500:]}")
    code, maxrss = (int(x) for x in out.split()[-2:])
    return code, maxrss, err


def cli_baseline_kb(env: dict[str, str]) -> int:
    """Peak RSS of the CLI doing nothing (``sellervault --help``), measured the same way."""
    launcher, _ = launch([str(CLI), "--help"], env)
    code, maxrss, _ = finish(launcher)
    if code != 0:
        raise SystemExit("`sellervault --help` failed")
    return maxrss


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between /proc samples")
    args = parser.parse_args(argv)
    clean_environment()
    print(f"import memory benchmark: {args.orders} orders, db={args.db}", flush=True)

    with tempfile.TemporaryDirectory(prefix="sv-bench-import-") as tmp, \
            scratch_database(args.db, Path(tmp) / "db", "import") as url:
        root = Path(tmp)
        started = time.perf_counter()
        data = root / "orders.jsonl"
        size = write_orders(data, args.orders)
        print(f"wrote {data.name}: {size / 1e6:.0f} MB in {time.perf_counter() - started:.0f}s",
              flush=True)

        settings, initialized = new_instance(root / "vault", url)
        runtime = bootstrap.open_runtime(settings)
        try:
            with running_vault(runtime, initialized) as vault:
                admin = vault.admin_token()
                api_key = vault.create_service(admin, "bench import service",
                                               [{"role": "ingest", "tenant": TENANT}])
                env = {**os.environ, "XDG_CONFIG_HOME": str(root / "config")}
                baseline_kb = cli_baseline_kb(env)
                subprocess.run([str(CLI), "login", "--server", vault.base_url, "--ca-cert",
                                str(vault.ca_file), "--api-key-stdin"], input=api_key + "\n",
                               env=env, check=True, text=True, capture_output=True)
                peak_kb, seconds, samples = run_import(data, size, env, args.poll)
            with runtime.store.transaction() as session:
                stored = session.scalar(select(func.count()).select_from(Order)
                                        .where(Order.tenant_id == TENANT))
        finally:
            runtime.close()

    if stored != args.orders:
        raise SystemExit(f"{stored} orders stored, expected {args.orders}")
    peak_mb = peak_kb / 1024
    rate = args.orders / seconds
    print()
    print(f"baseline: `sellervault --help` peaks at {baseline_kb / 1024:.0f} MB")
    print("import RSS by progress: " + ", ".join(f"{p}% {kb / 1024:.0f} MB"
                                                 for p, kb in samples))
    print(f"import of {args.orders} orders: {seconds:.0f}s, {rate:.0f} orders/s, "
          f"peak RSS {peak_mb:.0f} MB ({peak_kb / baseline_kb:.1f}x the idle CLI); "
          f"all {stored} stored")
    verdict = "met" if peak_mb < LIMIT_MB else "MISSED"
    print(f"peak RSS < {LIMIT_MB} MB: {verdict}")
    emit({"bench": "import_memory", "orders": args.orders, "peak_rss_mb": round(peak_mb, 1),
          "orders_per_s": round(rate, 1)})
    return 0


def run_import(data: Path, size: int, env: dict[str, str],
               poll: float) -> tuple[int, float, list[tuple[int, int]]]:
    """Run the import; returns (peak RSS KiB, seconds, [(percent read, RSS KiB)])."""
    started = time.perf_counter()
    launcher, pid = launch([str(CLI), "import", str(data), "--tenant", TENANT, "--quiet"], env)
    polled_peak = 0
    samples: list[tuple[int, int]] = []
    next_tenth = 10
    last_report = started
    while launcher.poll() is None:
        hwm = _status_kb(pid, "VmHWM")
        rss = _status_kb(pid, "VmRSS")
        if hwm:
            polled_peak = max(polled_peak, hwm)
        position = _file_position(pid, data)
        if position is not None and rss and position * 100 >= next_tenth * size:
            samples.append((next_tenth, rss))
            next_tenth += 10
        now = time.perf_counter()
        if now - last_report >= 60:
            done = f"{position / size:.0%} of the file read, " if position is not None else ""
            print(f"  {now - started:4.0f}s: {done}RSS {(rss or 0) / 1024:.0f} MB",
                  flush=True)
            last_report = now
        time.sleep(poll)
    seconds = time.perf_counter() - started
    code, maxrss, output = finish(launcher)
    if code != 0:
        raise SystemExit(f"import failed ({code}): {output.strip()[-500:]}")
    print(f"  {output.strip()}", flush=True)
    print(f"  peak RSS: ru_maxrss {maxrss / 1024:.0f} MB, polled VmHWM "
          f"{polled_peak / 1024:.0f} MB", flush=True)
    return max(polled_peak, maxrss), seconds, samples


if __name__ == "__main__":
    sys.exit(main())
