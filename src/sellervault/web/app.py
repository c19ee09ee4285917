"""The application: routers under /api/v1, error handlers, and the security middleware."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from sellervault import __version__
from sellervault.runtime import Runtime
from sellervault.web import errors
from sellervault.web.api import accounts, audit, meta, orders, session
from sellervault.web.middleware import SecurityMiddleware

API_PREFIX = "/api/v1"


def build_api() -> FastAPI:
    """The FastAPI application alone (for route inspection); serve ``create_app`` instead."""
    api = FastAPI(
        title="SellerVault", version=__version__,
        openapi_url=None, docs_url=None, redoc_url=None,  # OpenAPI served by a guarded route
    )
    for module in (session, accounts, orders, audit, meta):
        api.include_router(module.router, prefix=API_PREFIX)
    errors.install(api)
    return api


def create_app(runtime: Runtime) -> ASGIApp:
    return SecurityMiddleware(build_api(), runtime, runtime.settings.hsts_max_age)
