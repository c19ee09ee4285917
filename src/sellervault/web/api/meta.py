"""Health and the OpenAPI document (public: they describe the service, not its data)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Response

from sellervault.access.actions import Action
from sellervault.web.context import RequestState, api_router, require

router = api_router("meta")


@router.get("/health")
def health(
    _state: Annotated[RequestState, Depends(require(Action.HEALTH_READ))],
) -> dict[str, str]:
    return {"status": "ok"}


@router.head("/health", response_class=Response,
             responses={200: {"description": "healthy (no body)", "content": {}}})
def health_head(
    _state: Annotated[RequestState, Depends(require(Action.HEALTH_READ))],
) -> Response:
    """What a load balancer's probe sends: the status alone."""
    return Response(status_code=200)


@router.get("/openapi.json", include_in_schema=False)
def openapi(
    request: Request,
    _state: Annotated[RequestState, Depends(require(Action.DOCS_READ))],
) -> dict[str, Any]:
    document: dict[str, Any] = request.app.openapi()
    return document
