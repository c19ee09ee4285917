"""The application's start-up: the worker threads sized for the database, and on
PostgreSQL the event loop's own connections.

Routes whose database work blocks run on anyio's worker threads; ``Runtime.worker_threads``
(the ``worker_threads`` setting, else the database's default: one on SQLite, whose writers
take turns anyway, four on PostgreSQL) sizes that pool when the server starts. On PostgreSQL
the hot path (the order route) awaits its statements in the event loop instead, on
connections opened at start-up and closed at shut-down.

FastAPI's own OpenTelemetry is switched off: it would report requests, with their parsed
arguments, validation errors and exception messages, to whatever provider the process has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import anyio
import anyio.to_thread
import pytest
from fastapi import FastAPI

from sellervault.config import Settings
from sellervault.runtime import Runtime
from sellervault.web.app import create_app
from sellervault.web.middleware import SecurityMiddleware
from sellervault.web.server import build_server


def threads_after_start_up(api: FastAPI) -> int:
    """Run the app's lifespan start-up in a fresh event loop; the loop's thread-pool size."""

    async def start() -> int:
        async with api.router.lifespan_context(api):
            return int(anyio.to_thread.current_default_thread_limiter().total_tokens)

    return anyio.run(start)


def api_of(runtime: Runtime) -> FastAPI:
    app = create_app(runtime)
    assert isinstance(app, SecurityMiddleware) and isinstance(app.app, FastAPI)
    return app.app


def test_the_database_sets_the_default(runtime: Runtime) -> None:
    expected = 1 if runtime.store.dialect == "sqlite" else 4
    assert runtime.worker_threads == expected
    assert threads_after_start_up(api_of(runtime)) == expected


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_setting_overrides_the_default(settings: Settings, runtime: Runtime) -> None:
    tuned = Runtime(settings.model_copy(update={"worker_threads": 3}), runtime.store,
                    runtime.keyring, runtime.clock)
    assert threads_after_start_up(api_of(tuned)) == 3


def test_the_server_runs_the_start_up(runtime: Runtime) -> None:
    """uvicorn skips an app's lifespan unless told to run it."""
    assert build_server(runtime, "127.0.0.1", 8443).config.lifespan == "on"


def test_start_up_opens_the_event_loop_connections_and_shut_down_closes_them(
        runtime: Runtime) -> None:
    api = api_of(runtime)

    async def serve() -> bool:
        async with api.router.lifespan_context(api):
            return runtime.store.has_loop_connections

    assert anyio.run(serve)
    assert not runtime.store.has_loop_connections


# Global OpenTelemetry providers can be set once per process: each probe runs in its own. The
# providers are "configured" ones (not OpenTelemetry's no-op or proxy classes), which is when
# FastAPI's telemetry switches itself on; they note every tracer or logger asked of them and
# every record emitted.
TELEMETRY_PROBE = textwrap.dedent("""
    import json, sys
    from opentelemetry import _logs, trace
    from opentelemetry._logs import LoggerProvider, NoOpLogger
    from opentelemetry.trace import NoOpTracer, TracerProvider

    asked = []

    class Tracers(TracerProvider):
        def get_tracer(self, *args, **kwargs):
            asked.append("tracer")
            return NoOpTracer()

    class Logger(NoOpLogger):
        def emit(self, *args, **kwargs):
            asked.append("log record")

    class Loggers(LoggerProvider):
        def get_logger(self, name, *args, **kwargs):
            asked.append("logger")
            return Logger(name)

    trace.set_tracer_provider(Tracers())
    _logs.set_logger_provider(Loggers())

    from fastapi import FastAPI
    from starlette.testclient import TestClient
    from sellervault.web.app import build_api

    app = FastAPI() if sys.argv[1] == "plain-fastapi" else build_api()

    @app.get("/probe/{number}")
    def probe(number: int) -> dict:
        return {}

    with TestClient(app) as client:
        status = client.get("/probe/jane.doe@example.com").status_code
    print(json.dumps({"status": status, "asked": asked}))
""")


def telemetry_asked_for(app: str, env: dict[str, str] | None = None) -> list[str]:
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", TELEMETRY_PROBE, app],
                          capture_output=True, text=True, timeout=60, check=True,
                          env={**os.environ, **(env or {})})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == 422  # the probe request fails validation in both apps
    asked: list[str] = result["asked"]
    return asked


@pytest.mark.parametrize("env", [
    {},
    {"FASTAPI_OTEL_AUTO_CONFIGURE": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
], ids=["default", "auto-configure-asked-for"])
def test_fastapi_telemetry_is_off_so_a_configured_provider_gets_nothing(
        env: dict[str, str]) -> None:
    assert telemetry_asked_for("sellervault", env) == []


def test_the_telemetry_probe_sees_a_plain_fastapi_app_report() -> None:
    """The probe's control: FastAPI's default does report a request to these providers."""
    asked = telemetry_asked_for("plain-fastapi")
    assert "tracer" in asked and "log record" in asked
