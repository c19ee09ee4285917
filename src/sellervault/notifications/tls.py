"""The one TLS client context both channels use: certificate and host name verified (against
a CA file given in the settings, else the system's trust store), TLS 1.2 at least."""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
