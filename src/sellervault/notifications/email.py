"""The e-mail channel: an alert's notice as a plain-text message, sent over SMTP only after
STARTTLS (certificate and host name verified). A server that does not offer STARTTLS gets
nothing but our EHLO: the message and the login are never sent in clear, whatever the host.

Implicit TLS (port 465) is not supported: STARTTLS on the submission port (587) is.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import socket
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from sellervault.audit.events import Reason
from sellervault.notifications.deadline import Deadline
from sellervault.notifications.errors import DeliveryError
from sellervault.notifications.message import AlertNotice, email_subject, email_text

log = logging.getLogger("sellervault.notifications")

TIMEOUT_SECONDS = 10.0
"""Each blocking step (connect, each read or write): a peer that does not answer at all."""
DEADLINE_SECONDS = 30.0
"""The whole attempt, from connecting to the message's acceptance: a peer (or anyone on the
path before STARTTLS) that answers slowly, one continuation line at a time, within each
step's timeout (``deadline``)."""
EHLO_NAME = "sellervault.invalid"  # (not the host's name: smtplib would look it up in DNS)


def build(notice: AlertNotice, sender: str, recipients: list[str], date: datetime) -> EmailMessage:
    """The message: subject and text from the notice, ``Message-ID`` from the notification id
    (the same on every attempt, so a mail client can fold a repeat)."""
    message = EmailMessage()
    message["Subject"] = email_subject(notice)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = f"<{notice.notification_id}@{sender.rpartition('@')[2]}>"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
    message.set_content(email_text(notice))
    return message


class _Smtp(smtplib.SMTP):
    """``smtplib.SMTP`` whose connection is made (and watched) by the attempt's deadline."""

    def __init__(self, host: str, deadline: Deadline) -> None:
        super().__init__(local_hostname=EHLO_NAME, timeout=TIMEOUT_SECONDS)
        self._host = host  # (the name STARTTLS verifies; set by the constructor given a host)
        self._deadline = deadline

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self._deadline.connect((host, port), timeout)


def send(message: EmailMessage, host: str, port: int, context: ssl.SSLContext,
         login: tuple[str, str] | None = None) -> None:
    """Send ``message`` through ``host``: EHLO, STARTTLS (refused if not offered), EHLO again,
    the login if any, the message, all within ``DEADLINE_SECONDS``. Failures raise
    ``DeliveryError`` with the reply code; recipients refused while others were accepted are
    logged (by number) and not retried, which would send the others a second copy."""
    deadline = Deadline(DEADLINE_SECONDS)
    try:
        with deadline:
            refused = _converse(_Smtp(host, deadline), message, host, port, context, login)
    except DeliveryError:
        raise
    except OSError as exc:  # (smtplib's errors are OSErrors: a refusal, a drop, a timeout)
        raise _failure(exc, deadline.expired) from None
    if refused:
        log.warning("alert e-mail: %d of its recipients refused by the server", len(refused))


def _converse(smtp: _Smtp, message: EmailMessage, host: str, port: int,
              context: ssl.SSLContext, login: tuple[str, str] | None) -> dict[str, Any]:
    """The SMTP exchange; the recipients refused. Connecting here, not in the constructor,
    puts the greeting under the deadline too."""
    try:
        code, reply = smtp.connect(host, port)
        if code != 220:
            raise smtplib.SMTPConnectError(code, reply)
        smtp.ehlo()
        if not smtp.has_extn("starttls"):
            raise DeliveryError(Reason.STARTTLS_UNAVAILABLE)
        smtp.starttls(context=context)
        smtp.ehlo()
        if login is not None:
            smtp.login(*login)
        refused: dict[str, Any] = smtp.send_message(message)
        _quit(smtp)
    finally:
        smtp.close()
    return refused


def _quit(smtp: _Smtp) -> None:
    """Say goodbye; the message is accepted already, so a server that answers QUIT badly (or
    not in time) does not fail the attempt: a retry would send a second copy."""
    with contextlib.suppress(OSError):
        smtp.quit()


def _failure(exc: OSError, expired: bool) -> DeliveryError:
    """The attempt's failure as a reason code (and the reply code, when there was one)."""
    if expired:  # (the watchdog cut the connection: whatever smtplib made of that)
        return DeliveryError(Reason.NOTIFICATION_UNREACHABLE)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return DeliveryError(Reason.NOTIFICATION_REFUSED)
    if isinstance(exc, smtplib.SMTPResponseException):
        return DeliveryError(Reason.NOTIFICATION_REFUSED, exc.smtp_code)
    if isinstance(exc, ssl.SSLError):
        return DeliveryError(Reason.NOTIFICATION_TLS)
    return DeliveryError(Reason.NOTIFICATION_UNREACHABLE)
