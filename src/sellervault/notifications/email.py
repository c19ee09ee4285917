"""The e-mail channel: an alert's notice as a plain-text message, sent over SMTP only after
STARTTLS (certificate and host name verified). A server that does not offer STARTTLS gets
nothing but our EHLO: the message and the login are never sent in clear, whatever the host.

Implicit TLS (port 465) is not supported: STARTTLS on the submission port (587) is.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from sellervault.audit.events import Reason
from sellervault.notifications.errors import DeliveryError
from sellervault.notifications.message import AlertNotice, email_subject, email_text

log = logging.getLogger("sellervault.notifications")

TIMEOUT_SECONDS = 10.0
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


def send(message: EmailMessage, host: str, port: int, context: ssl.SSLContext,
         login: tuple[str, str] | None = None) -> None:
    """Send ``message`` through ``host``: EHLO, STARTTLS (refused if not offered), EHLO again,
    the login if any, the message. Failures raise ``DeliveryError`` with the reply code;
    recipients refused while others were accepted are logged (by number) and not retried,
    which would send the others a second copy."""
    try:
        with smtplib.SMTP(host, port, local_hostname=EHLO_NAME,
                          timeout=TIMEOUT_SECONDS) as smtp:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise DeliveryError(Reason.STARTTLS_UNAVAILABLE)
            smtp.starttls(context=context)
            smtp.ehlo()
            if login is not None:
                smtp.login(*login)
            refused = smtp.send_message(message)
    except DeliveryError:
        raise
    except smtplib.SMTPRecipientsRefused:
        raise DeliveryError(Reason.NOTIFICATION_REFUSED) from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(Reason.NOTIFICATION_REFUSED, exc.smtp_code) from None
    except ssl.SSLError:
        raise DeliveryError(Reason.NOTIFICATION_TLS) from None
    except OSError:  # (smtplib's other errors too: a dropped connection, a timeout)
        raise DeliveryError(Reason.NOTIFICATION_UNREACHABLE) from None
    if refused:
        log.warning("alert e-mail: %d of its recipients refused by the server", len(refused))
