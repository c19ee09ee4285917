"""JSON errors: ``{"error": {"code", "message"}}`` with fixed messages that never echo input.

A validation error names the path of each bad field (``body.orders.0.PurchaseDate``) and
the kind of problem, never the value that was sent.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sellervault.access.errors import AccessError, BudgetExhaustedError
from sellervault.accounts.errors import AccountError
from sellervault.crypto.errors import CryptoError, TenantKeysBusyError
from sellervault.records.errors import RecordError
from sellervault.web.context import SCOPE_KEY, ForbiddenError, TenantNotFoundError

log = logging.getLogger("sellervault.web")

HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    response = JSONResponse({"error": body}, status_code=status)
    response.headers["cache-control"] = "no-store"
    return response


def _field_path(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location)


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    _note_reason(request, "invalid_request")
    fields = [{"path": _field_path(tuple(error.get("loc", ()))), "problem": error.get("type")}
              for error in exc.errors()[:20]]
    paths = ", ".join(item["path"] for item in fields)
    return error_response(422, "invalid_request", f"invalid or missing value at {paths}",
                          fields=fields)


def _note_reason(request: Request, reason: str) -> None:
    """Tell the fallback security event why the request failed (a code, never a message)."""
    state = request.scope.get(SCOPE_KEY)
    if state is not None:
        state.extra["reason"] = reason


def _domain(request: Request, exc: Exception) -> JSONResponse:
    status = getattr(exc, "status", 400)
    code = getattr(exc, "code", "error")
    _note_reason(request, "no_grant_on_tenant" if isinstance(exc, TenantNotFoundError) else code)
    response = error_response(status, code, str(exc))
    if isinstance(exc, BudgetExhaustedError | TenantKeysBusyError):
        response.headers["retry-after"] = str(exc.retry_after)
    return response


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    _note_reason(request, code)
    return error_response(exc.status_code, code, code.replace("_", " "))


def _crypto(request: Request, exc: Exception) -> JSONResponse:
    _note_reason(request, "integrity_failure")
    log.error("integrity failure: %s", type(exc).__name__)
    return error_response(500, "integrity_failure",
                          "stored data failed its integrity check; the event is logged")


def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error: %s", type(exc).__name__)
    return error_response(500, "internal_error", "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    for kind in (AccessError, AccountError, RecordError, ForbiddenError, TenantNotFoundError,
                 TenantKeysBusyError):
        app.add_exception_handler(kind, _domain)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(CryptoError, _crypto)
    app.add_exception_handler(Exception, _unexpected)
