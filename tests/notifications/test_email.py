"""notifications.email against a real SMTP server (aiosmtpd) on loopback: the message goes
only after STARTTLS (certificate verified), the login only after STARTTLS too; a server that
offers no STARTTLS gets no MAIL command, no login and no message (nothing in clear), and so
does one whose certificate is not trusted; a refused login is a refused delivery with its
reply code. The message says only what the notice says. A server that stalls (an endless
greeting or EHLO reply dripped a line at a time, a TLS handshake never completed) fails the
attempt at its overall deadline, whatever the per-step timeout."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest

from sellervault.audit.events import Reason
from sellervault.notifications import email
from sellervault.notifications.errors import DeliveryError
from sellervault.notifications.message import AlertNotice
from sellervault.notifications.tls import client_context
from tests.notifications.peers import (
    SMTP_PASSWORD,
    SMTP_USER,
    TlsFiles,
    finishes_within,
    smtp_server,
    stalling_peer,
    stalling_smtp,
)

NOTICE = AlertNotice(notification_id="ntf_0123456789abcdef01234567", service="acme-vault",
                     alert_id="alr_0123456789abcdef01234567", rule="canary-access",
                     severity="critical", principal_id="acc_0123456789abcdef01234567",
                     created_at="2026-12-05T10:00:01.000000Z", status="open")
SENDER, RECIPIENTS = "vault@acme.example", ["soc@acme.example", "oncall@acme.example"]
DATE = datetime(2026, 12, 5, 10, 0, 5, tzinfo=UTC)


def message() -> email.EmailMessage:
    return email.build(NOTICE, SENDER, RECIPIENTS, DATE)


def test_an_alert_mail_goes_through_starttls_and_a_login(tls: TlsFiles) -> None:
    with smtp_server(tls, login=True) as server:
        email.send(message(), server.host, server.port, client_context(tls.certificate),
                   (SMTP_USER, SMTP_PASSWORD))
    assert server.inbox.mail_from == [(SENDER, True)]  # MAIL only once TLS was on
    [(sender, recipients, content, logged_in)] = server.inbox.messages
    assert (sender, recipients, logged_in) == (SENDER, RECIPIENTS, True)
    received = message_from_bytes(content, policy=policy.default)
    assert " ".join(received["Subject"].split()) == (  # (a long subject is folded)
        "[acme-vault] critical alert: canary-access (alr_0123456789abcdef01234567)")
    assert received["Message-ID"] == "<ntf_0123456789abcdef01234567@acme.example>"
    assert received["To"] == "soc@acme.example, oncall@acme.example"
    text = received.get_body().get_content()  # type: ignore[union-attr]
    for value in ("alr_0123456789abcdef01234567", "acc_0123456789abcdef01234567",
                  "canary-access", "critical", "2026-12-05T10:00:01.000000Z", "open"):
        assert value in text


def test_without_a_login_configured_none_is_attempted(tls: TlsFiles) -> None:
    with smtp_server(tls) as server:
        email.send(message(), server.host, server.port, client_context(tls.certificate))
    [(_, _, _, logged_in)] = server.inbox.messages
    assert not logged_in


def test_a_server_without_starttls_gets_nothing_in_clear() -> None:
    with smtp_server(None) as server, pytest.raises(DeliveryError) as failed:
        email.send(message(), server.host, server.port, client_context(None),
                   (SMTP_USER, SMTP_PASSWORD))
    assert failed.value.reason is Reason.STARTTLS_UNAVAILABLE
    assert server.inbox.mail_from == [] and server.inbox.messages == []


def test_a_server_whose_certificate_is_not_trusted_gets_nothing(
        tls: TlsFiles, other_tls: TlsFiles) -> None:
    with smtp_server(tls, login=True) as server, pytest.raises(DeliveryError) as failed:
        email.send(message(), server.host, server.port,
                   client_context(other_tls.certificate), (SMTP_USER, SMTP_PASSWORD))
    assert failed.value.reason is Reason.NOTIFICATION_TLS
    assert server.inbox.mail_from == [] and server.inbox.messages == []


def test_a_refused_login_is_a_refused_delivery_with_its_code(tls: TlsFiles) -> None:
    with smtp_server(tls, login=True) as server, pytest.raises(DeliveryError) as failed:
        email.send(message(), server.host, server.port, client_context(tls.certificate),
                   (SMTP_USER, "not the password"))
    assert (failed.value.reason, failed.value.status) == (Reason.NOTIFICATION_REFUSED, 535)
    assert server.inbox.messages == []
    assert "not the password" not in str(failed.value)


@pytest.mark.parametrize("stall", ["greeting", "ehlo", "starttls"])
def test_a_server_that_stalls_fails_the_attempt_at_its_deadline(
        tls: TlsFiles, monkeypatch: pytest.MonkeyPatch, stall: str) -> None:
    monkeypatch.setattr(email, "DEADLINE_SECONDS", 0.5)
    monkeypatch.setattr(email, "TIMEOUT_SECONDS", 60.0)  # (no step times out: only the deadline)
    with stalling_peer(stalling_smtp(stall)) as port, pytest.raises(DeliveryError) as failed:
        started = time.monotonic()
        finishes_within(10, lambda: email.send(message(), "127.0.0.1", port,
                                               client_context(tls.certificate),
                                               (SMTP_USER, SMTP_PASSWORD)))
    assert failed.value.reason is Reason.NOTIFICATION_UNREACHABLE
    assert time.monotonic() - started < 3
