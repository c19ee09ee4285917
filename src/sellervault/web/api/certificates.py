"""Certificates of sanitization (``security-officer``, ``auditor``): the signed JSON, a
printable HTML form, and the public key that checks them offline (``deletion.certificates``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path
from fastapi.responses import HTMLResponse, Response

from sellervault.access.actions import Action
from sellervault.deletion import certificates
from sellervault.web.context import RequestState, api_router, require
from sellervault.web.openapi import own_errors

router = api_router("certificates")

CERTIFICATE_ID = Path(max_length=32, pattern=r"^cert_[0-9a-f]{24}$")


@router.get("/certificates/public-key")
def certificate_public_key(
    state: Annotated[RequestState, Depends(require(Action.CERTIFICATES_READ))],
) -> dict[str, str]:
    """The Ed25519 public key (``public_key``, PEM) every certificate is checked with."""
    return {"public_key": certificates.public_key(state.runtime, state.auditor),
            "algorithm": certificates.ALGORITHM}


@router.get("/certificates/{certificate_id}", responses=own_errors(404, 422))
def get_certificate(
    certificate_id: Annotated[str, CERTIFICATE_ID],
    state: Annotated[RequestState, Depends(require(Action.CERTIFICATES_READ))],
) -> dict[str, Any]:
    """The signed certificate: ``{certificate, signature, algorithm, key_id}``."""
    return certificates.get(state.runtime, state.auditor, certificate_id)


@router.get("/certificates/{certificate_id}/html", response_class=Response,
            responses={200: {"description": "The printable page",
                             "content": {"text/html": {"schema": {"type": "string"}}}},
                       **own_errors(404, 422)})
def get_certificate_html(
    certificate_id: Annotated[str, CERTIFICATE_ID],
    state: Annotated[RequestState, Depends(require(Action.CERTIFICATES_READ))],
) -> HTMLResponse:
    """The certificate as a printable page (errors are JSON, as everywhere)."""
    return HTMLResponse(certificates.render_html(
        certificates.get(state.runtime, state.auditor, certificate_id)))
