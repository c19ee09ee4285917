"""The application: routers under /api/v1, error handlers, and the security middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from starlette.types import ASGIApp

from sellervault import __version__
from sellervault.runtime import Runtime
from sellervault.web import errors
from sellervault.web.api import accounts, audit, meta, orders, session
from sellervault.web.middleware import SecurityMiddleware

API_PREFIX = "/api/v1"


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def build_api(lifespan: Lifespan | None = None) -> FastAPI:
    """The FastAPI application alone (for route inspection); serve ``create_app`` instead."""
    api = FastAPI(
        title="SellerVault", version=__version__, lifespan=lifespan,
        openapi_url=None, docs_url=None, redoc_url=None,  # OpenAPI served by a guarded route
    )
    for module in (session, accounts, orders, audit, meta):
        api.include_router(module.router, prefix=API_PREFIX)
    errors.install(api)
    return api


def worker_threads(count: int) -> Lifespan:
    """At start-up, size the thread pool that runs the routes (each route is a plain function:
    its database work blocks) to ``count`` (``Runtime.worker_threads``)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = count
        yield

    return lifespan


def create_app(runtime: Runtime) -> ASGIApp:
    return SecurityMiddleware(build_api(worker_threads(runtime.worker_threads)), runtime,
                              runtime.settings.hsts_max_age)
