"""The API fuzzed by Schemathesis, from its own OpenAPI document, in every run of the suite.

Against the live TLS server, once with no credentials and once with each role's, with
``--checks all``: no 5xx, every status and every response as documented, the authentication
a route declares enforced (a request without the bearer token, or with a broken one, is
refused), invalid input refused, valid input accepted (but for the refusals
``schemathesis.toml`` explains), 405 with ``Allow`` for methods not served, and the stateful
phase following the document's links (the order an ingest stores is read back). The
fuzzing of issue 10 found thirteen defects this way and by hand; this keeps them found.

Bounded to keep ``make test`` under ten minutes: ``FUZZ_EXAMPLES`` cases per operation and
phase (default 15: 25 until issue 14 added a dozen operations; set it higher for a deeper
run), on PostgreSQL (the production database, where races live). The seed is
fixed so that a failure reproduces; set ``FUZZ_SEED`` to explore (a failure prints the seed
and a ``curl`` line that replays it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from sellervault.web.app import build_api
from tests.support import Server

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
SEED = int(os.environ.get("FUZZ_SEED", "20261204"))
ROLES = [None, "admin", "ingest", "pii-reader", "security-officer"]

pytestmark = [pytest.mark.slow,
              # (a test waits for its role's run, which under make test's other workers
              # takes minutes: the suite's 120 s per test would cut it; each run has 400 s)
              pytest.mark.timeout(450),
              pytest.mark.parametrize("server", ["postgresql"], indirect=True)]


@pytest.fixture(scope="module")
def credentials(server: Server) -> dict[str, str]:
    """One bearer token per role: a session for each person, an API key for ingest."""
    admin = server.admin_token()
    return {
        "admin": admin,
        "ingest": server.create_service(admin, "fuzz ingest",
                                        [{"role": "ingest", "tenant": "acme"}]),
        "pii-reader": server.create_person(admin, "fuzz.reader@example.test", "Fuzz Reader",
                                           [{"role": "pii-reader", "tenant": "acme"}])[0],
        "security-officer": server.create_person(
            admin, "fuzz.officer@example.test", "Fuzz Officer",
            [{"role": "security-officer", "tenant": "*"}])[0],
    }


def schemathesis(server: Server, token: str | None,
                 workdir: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("st")), "--config-file", str(CONFIG), "run",
               f"{server.base_url}/api/v1/openapi.json", "--tls-verify", str(server.ca_file),
               "--checks", "all", "--max-examples", str(EXAMPLES), "--seed", str(SEED),
               "--phases", "examples,coverage,fuzzing,stateful", "--request-timeout", "20",
               "--generation-database", "none", "--no-color"]
    if token is not None:
        command += ["-H", f"Authorization: Bearer {token}"]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=400,
                          check=False)


@pytest.fixture(scope="module")
def runs(server: Server, credentials: dict[str, str], tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[dict[str | None, Future[subprocess.CompletedProcess[str]]]]:
    """Every role's run, three at a time, started together so that the suite waits for them
    once. The runs are the suite's longest chain: two at a time, the fifth started after
    eight minutes beside ``make test``'s other workers and was the last test to end."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        yield {role: pool.submit(schemathesis, server, credentials[role] if role else None,
                                 tmp_path_factory.mktemp("schemathesis"))
               for role in ROLES}


@pytest.mark.parametrize("role", ROLES, ids=[role or "no-credentials" for role in ROLES])
def test_schemathesis_finds_no_failure(
        runs: dict[str | None, Future[subprocess.CompletedProcess[str]]],
        credentials: dict[str, str], role: str | None) -> None:
    result = runs[role].result()
    report = result.stdout[-12_000:] + result.stderr[-2_000:]
    assert result.returncode == 0, report
    operations = sum(len(methods) for methods in build_api().openapi()["paths"].values())
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert tested is not None and int(tested.group(1)) == operations, report
    for token in credentials.values():  # the report filters credentials out
        assert token not in result.stdout
