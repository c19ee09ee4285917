"""The application: routers under /api/v1, error handlers, and the security middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp

from sellervault import __version__
from sellervault.accounts.passwords import prepare_timing_equaliser
from sellervault.jobs.registry import JOBS, Registry
from sellervault.jobs.scheduler import Scheduler
from sellervault.monitoring import detectors
from sellervault.runtime import Runtime
from sellervault.web import errors, openapi
from sellervault.web.api import (
    accounts,
    alerts,
    approvals,
    audit,
    certificates,
    deletions,
    enrolment,
    killswitches,
    meta,
    orders,
    session,
    subjects,
)
from sellervault.web.middleware import SecurityMiddleware

API_PREFIX = "/api/v1"
EVENT_LOOP_CONNECTIONS = 4  # each request holds one for a single statement at a time


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

# FastAPI's own OpenTelemetry, all of it off. Left on (FastAPI's default), it reports every
# request to whatever global providers the process has, or with FASTAPI_OTEL_AUTO_CONFIGURE=true
# sets up OTLP exporters itself; what it hands their processors includes the request's parsed
# arguments and its validation errors with their input values, and its logs carry the message
# and stack trace of an unhandled exception: buyer PII and secrets, leaving by a channel that has
# none of the security log's rules. A request's record is its security event. (Left on, it
# would also ask three providers on every request whether they are set up.)
TELEMETRY_OFF: TelemetryConfig = {
    "tracing": False, "metrics": False, "logs": False, "operation_spans": False,
    "auto_configure": False,
}


def build_api(lifespan: Lifespan | None = None) -> FastAPI:
    """The FastAPI application alone (for route inspection); serve ``create_app`` instead."""
    api = FastAPI(
        title="SellerVault", version=__version__, lifespan=lifespan,
        openapi_url=None, docs_url=None, redoc_url=None,  # OpenAPI served by a guarded route
        telemetry=TELEMETRY_OFF,
        # No redirect from /path/ to /path: it was built from the Host header, an open
        # redirect for anyone who can make a client send a request with a forged one.
        redirect_slashes=False,
    )
    for module in (orders, session, enrolment, accounts, approvals, audit, killswitches,
                   alerts, deletions, subjects, certificates, meta):  # the hot path's first
        api.include_router(module.router, prefix=API_PREFIX)
    errors.install(api)

    def document() -> dict[str, Any]:
        """FastAPI's document completed by ``web.openapi`` (built once)."""
        if api.openapi_schema is None:
            api.openapi_schema = openapi.complete(api, get_openapi(
                title=api.title, version=api.version, routes=api.routes))
        return api.openapi_schema

    api.openapi = document  # type: ignore[method-assign]  # (FastAPI's documented way)
    return api


def start_up(runtime: Runtime, jobs: Registry = JOBS) -> Lifespan:
    """The server's start-up and shut-down. Routes that block (plain functions) run on
    anyio's worker threads: the pool is sized to ``Runtime.worker_threads``. The hot path's
    connections for the event loop (``Store.open_async``) open here and close at shut-down.
    The periodic ``jobs`` are scheduled from start-up until shut-down (``jobs.scheduler``;
    their work runs on a thread of their own)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = runtime.worker_threads
        prepare_timing_equaliser()
        await runtime.store.open_async(EVENT_LOOP_CONNECTIONS)
        scheduler = Scheduler(runtime, jobs)
        scheduler.start()
        detecting = detectors.attach(runtime)
        try:
            yield
        finally:
            try:
                await scheduler.stop()
                await anyio.to_thread.run_sync(runtime.audit.subscribers.unsubscribe, detecting)
            finally:
                await runtime.store.close_async()

    return lifespan


def create_app(runtime: Runtime, jobs: Registry = JOBS) -> ASGIApp:
    return SecurityMiddleware(build_api(start_up(runtime, jobs)), runtime,
                              runtime.settings.hsts_max_age)
