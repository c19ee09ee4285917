"""The peers' certificates (``peers``), one pair per test session, and the test's vault with
both notification channels pointing at live peers (``notified``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from pydantic import SecretStr

from sellervault.clock import ManualClock
from sellervault.runtime import Runtime
from tests.notifications.peers import (
    SMTP_PASSWORD,
    SMTP_USER,
    WEBHOOK_SECRET,
    Notified,
    TlsFiles,
    https_receiver,
    other_tls,
    smtp_server,
    tls,
)

__all__ = ["notified", "other_tls", "tls"]


@pytest.fixture
def notified(runtime: Runtime, clock: ManualClock, tls: TlsFiles) -> Iterator[Notified]:
    """The test's vault with both channels configured, pointing at live peers."""
    with https_receiver(tls, WEBHOOK_SECRET.encode(), clock) as receiver, \
            smtp_server(tls, login=True) as smtp:
        settings = runtime.settings.model_copy(update={
            "notify_webhook_url": SecretStr(receiver.url),
            "notify_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "notify_webhook_ca_file": tls.certificate,
            "notify_smtp_host": smtp.host, "notify_smtp_port": smtp.port,
            "notify_smtp_user": SMTP_USER, "notify_smtp_password": SecretStr(SMTP_PASSWORD),
            "notify_smtp_ca_file": tls.certificate,
            "notify_email_from": "vault@acme.example", "notify_email_to": "soc@acme.example",
            "notify_instance": "acme-vault"})
        yield Notified(replace(runtime, settings=settings), clock, receiver, smtp)
