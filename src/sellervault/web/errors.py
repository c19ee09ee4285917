"""JSON errors: ``{"error": {"code", "message"}}`` with fixed messages that never echo input.

A validation error names the path of each bad field (``body.orders.0.PurchaseDate``) and
the kind of problem, never the value that was sent. A key is named only if the API declares
it (a property or parameter of the OpenAPI document): any other key, however it got into a
path (an unknown field, a key inside free-form data), is written ``(key)``, since it is
input, and could be anything, a password sent as a field name included.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from sellervault.access.errors import AccessError, BudgetExhaustedError
from sellervault.accounts.errors import AccountError, LoginThrottledError
from sellervault.audit.errors import ReviewError
from sellervault.audit.events import Reason
from sellervault.counters.errors import CountersUnavailableError
from sellervault.crypto.errors import CryptoError, TenantKeysBusyError, TenantKeysDestroyedError
from sellervault.deletion.errors import DeletionError
from sellervault.monitoring.errors import MonitoringError
from sellervault.notifications.dead_letters import NotificationError
from sellervault.records.errors import RecordError
from sellervault.web.body import Location, UnacceptableBodyError
from sellervault.web.context import SCOPE_KEY, ForbiddenError, TenantNotFoundError

log = logging.getLogger("sellervault.web")

HTTP_CODES = {404: Reason.NOT_FOUND, 405: Reason.METHOD_NOT_ALLOWED, 413: Reason.TOO_LARGE}


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    response = JSONResponse({"error": body}, status_code=status)
    response.headers["cache-control"] = "no-store"
    return response


UNDECLARED_KEY = "(key)"
MAX_FIELDS = 20
_LOCATIONS = frozenset({"body", "query", "path", "header"})


def declared_names(document: dict[str, Any]) -> frozenset[str]:
    """Every name the OpenAPI document declares: properties of its schemas, parameters, the
    tags of its unions."""
    names: set[str] = set(_LOCATIONS)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                names.update(properties)
            if node.get("in") in _LOCATIONS and isinstance(node.get("name"), str):
                names.add(node["name"])
            discriminator = node.get("discriminator")
            if isinstance(discriminator, dict):  # a union's tags: body.person.email
                names.update(discriminator.get("mapping", {}))
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(document)
    return frozenset(names)


def _vocabulary(request: Request) -> frozenset[str]:
    app = request.app
    names: frozenset[str] | None = getattr(app.state, "declared_names", None)
    if names is None:
        names = app.state.declared_names = declared_names(app.openapi())
    return names


def _field_path(location: Location, vocabulary: frozenset[str]) -> str:
    return ".".join(str(part) if isinstance(part, int) or part in vocabulary
                    else UNDECLARED_KEY for part in location)


def _invalid(request: Request, problems: list[tuple[Location, str]]) -> JSONResponse:
    _note_reason(request, Reason.INVALID_REQUEST)
    vocabulary = _vocabulary(request)
    fields = [{"path": _field_path(location, vocabulary), "problem": problem}
              for location, problem in problems[:MAX_FIELDS]]
    paths = ", ".join(dict.fromkeys(item["path"] for item in fields))
    return error_response(422, "invalid_request", f"invalid or missing value at {paths}",
                          fields=fields)


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _invalid(request, [(tuple(error.get("loc", ())), str(error.get("type")))
                              for error in exc.errors()[:MAX_FIELDS]])


def _unacceptable_body(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UnacceptableBodyError)
    return _invalid(request, [(exc.location, exc.problem)])


def _note_reason(request: Request, reason: Reason) -> None:
    """Tell the fallback security event why the request failed (a code, never a message)."""
    state = request.scope.get(SCOPE_KEY)
    if state is not None:
        state.extra["reason"] = reason


def _domain(request: Request, exc: Exception) -> JSONResponse:
    status = getattr(exc, "status", 400)
    code = getattr(exc, "code", Reason.HTTP_ERROR)
    _note_reason(request, Reason.NO_GRANT_ON_TENANT if isinstance(exc, TenantNotFoundError)
                 else code if isinstance(code, Reason) else Reason.HTTP_ERROR)
    response = error_response(status, code, str(exc))
    if isinstance(exc, BudgetExhaustedError | TenantKeysBusyError | CountersUnavailableError
                  | LoginThrottledError):
        response.headers["retry-after"] = str(exc.retry_after)
    return response


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, Reason.HTTP_ERROR)
    _note_reason(request, code)
    response = error_response(exc.status_code, code, code.replace("_", " "))
    if exc.status_code == 405:
        response.headers["allow"] = ", ".join(_allowed_methods(request))
    return response


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's own 405 names only the
    first route that matches the path, and the ingest and search routes share one)."""
    app = request.app
    table: list[tuple[re.Pattern[str], frozenset[str]]] | None = getattr(
        app.state, "route_methods", None)
    if table is None:
        table = app.state.route_methods = [
            (compile_path(context.path or "")[0], frozenset(context.methods or ()))
            for context in iter_route_contexts(app.routes)]
    path = request.scope["path"]
    return sorted({method for pattern, methods in table if pattern.match(path)
                   for method in methods})


def _crypto(request: Request, exc: Exception) -> JSONResponse:
    _note_reason(request, Reason.INTEGRITY_FAILURE)
    log.error("integrity failure: %s", type(exc).__name__)
    return error_response(500, "integrity_failure",
                          "stored data failed its integrity check; the event is logged")


def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error: %s", type(exc).__name__)
    return error_response(500, Reason.INTERNAL_ERROR, "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(UnacceptableBodyError, _unacceptable_body)
    for kind in (AccessError, AccountError, RecordError, ForbiddenError, TenantNotFoundError,
                 TenantKeysBusyError, TenantKeysDestroyedError, CountersUnavailableError,
                 MonitoringError, ReviewError, DeletionError, NotificationError):
        app.add_exception_handler(kind, _domain)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(CryptoError, _crypto)
    app.add_exception_handler(Exception, _unexpected)
