"""TLS for the listener: 1.2 minimum, Mozilla "intermediate" ciphers (Server Side TLS 6.0)."""

from __future__ import annotations

import ssl
from pathlib import Path

MOZILLA_INTERMEDIATE_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
])
MIN_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def harden(context: ssl.SSLContext, min_version: str = "1.2") -> ssl.SSLContext:
    """Apply the listener's TLS policy to a server context (also uvicorn's own)."""
    context.minimum_version = MIN_VERSIONS[min_version]
    context.set_ciphers(MOZILLA_INTERMEDIATE_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    return context


def server_context(cert_file: Path, key_file: Path, min_version: str = "1.2") -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert_file), str(key_file))
    return harden(context, min_version)


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client context, trusting ``ca_file`` (e.g. the self-signed certificate)."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
