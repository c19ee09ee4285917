"""Serving over TLS only: there is no code path that opens a plaintext listener."""

from __future__ import annotations

import gc

import uvicorn

from sellervault.jobs.registry import JOBS, Registry
from sellervault.network import NetworkGate, Networks
from sellervault.runtime import Runtime
from sellervault.web.app import create_app
from sellervault.web.limits import bounded_protocol
from sellervault.web.middleware import security_headers
from sellervault.web.refusals import RefusalLog
from sellervault.web.tls import harden


class TLSOnlyConfig(uvicorn.Config):
    """uvicorn's config with the listener's TLS policy applied to its SSL context."""

    def __init__(self, *args: object, min_tls: str = "1.2", **kwargs: object) -> None:
        self._min_tls = min_tls
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def load(self) -> None:
        super().load()
        if self.ssl is None:
            raise RuntimeError("refusing to serve without TLS")
        harden(self.ssl, self._min_tls)


def build_server(runtime: Runtime, host: str, port: int,
                 jobs: Registry = JOBS) -> uvicorn.Server:
    """The server, running ``jobs`` while it serves (tests give their own registry)."""
    settings = runtime.settings
    config = TLSOnlyConfig(
        create_app(runtime, jobs),
        host=host,
        port=port,
        ssl_certfile=str(settings.certificate_file),
        ssl_keyfile=str(settings.certificate_key_file),
        min_tls=settings.tls_min_version,
        access_log=False,  # URLs can carry search terms; the security log records requests
        server_header=False,
        log_level="warning",
        proxy_headers=False,
        lifespan="on",  # the app's start-up sizes its worker threads, starts the jobs' ticks
        # 400 for what the parser refuses, 431 past 16 KiB of head (or of framing ahead of
        # a chunked body's data), 408 for a body too slow, 503 past limit_concurrency; each
        # refusal an http:refused event; a client outside the allowed networks gets a bare 403
        http=bounded_protocol(security_headers(settings.hsts_max_age), RefusalLog(runtime),
                              NetworkGate(Networks.parse(settings.allowed_networks),
                                          Networks.parse(settings.trusted_proxies))),
        ws="none",  # no WebSocket upgrade, whatever is installed: it would pass the middleware
        limit_concurrency=settings.max_connections,  # beyond: 503, before any work
    )
    return uvicorn.Server(config)


def freeze_startup_objects() -> None:
    """Keep what start-up allocated (modules, the app, compiled statements, the pool) out of
    the garbage collector's generations from now on.

    Those objects live as long as the process; without this, every full collection, which
    the objects of a large request (an ingest batch) set off, walks all of them again.
    """
    gc.collect()
    gc.freeze()
