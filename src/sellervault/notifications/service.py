"""Delivering alert notifications: the ``alert-notifications`` job's function, which sends
every due notification of the outbox (``outbox``) on its channel (``webhook``, ``email``) and
records each attempt.

Secrets stay in the settings' ``SecretStr`` until the moment they are used; nothing here logs
or records a URL, an address, a secret or a message (events carry the notification id, the
channel, the attempt number and a reason code; log lines the same and an error class).
"""

from __future__ import annotations

import logging
import time

from sellervault.audit.events import Reason
from sellervault.config import Settings
from sellervault.monitoring import alerts
from sellervault.notifications import email, outbox, webhook
from sellervault.notifications.errors import DeliveryError
from sellervault.notifications.message import AlertNotice, json_body, notice_of
from sellervault.notifications.tls import client_context
from sellervault.runtime import Runtime

log = logging.getLogger("sellervault.notifications")

MAX_PER_RUN = 100
"""Notifications one run sends at most; the rest wait for the next run (15 s later)."""
RUN_SECONDS = 60.0
"""No new attempt starts once a run has taken this long (wall time): the rest wait for the
next run. The scheduler runs due jobs one after another on one thread, so a run of slow
receivers (each attempt up to its channel's deadline) must not hold every other job back; a
run lasts at most this plus one attempt."""


def deliver_due(rt: Runtime) -> int:
    """Send every due notification, one at a time, each claimed before it is sent; how many
    were delivered (the job's count). A failure is recorded and retried later, never raised:
    only the database failing makes the run fail. Stops at ``MAX_PER_RUN`` attempts or after
    ``RUN_SECONDS``, whichever comes first."""
    sent = 0
    started = time.monotonic()
    for _ in range(MAX_PER_RUN):
        if time.monotonic() - started >= RUN_SECONDS:
            log.info("alert notifications: this run's time is up; the rest are due next run")
            break
        claimed = outbox.claim_next(rt)
        if claimed is None:
            break
        try:
            alert = alerts.get_alert(rt, claimed.alert_id)
            send(rt, claimed.channel, notice_of(alert, claimed.id, rt.settings.notify_instance))
        except DeliveryError as exc:
            outbox.failed(rt, claimed, exc)
        except Exception as exc:  # (a bug or a surprise: recorded like a failure, by class)
            log.warning("notification %s: %s while sending", claimed.id, type(exc).__name__)
            outbox.failed(rt, claimed, DeliveryError(Reason.NOTIFICATION_FAILED))
        else:
            outbox.delivered(rt, claimed)
            sent += 1
    return sent


def send(rt: Runtime, channel: str, notice: AlertNotice) -> None:
    """One attempt on ``channel`` with the settings of now (a channel unset since the alert
    was raised fails, and ends as a dead letter)."""
    settings = rt.settings
    if channel == outbox.WEBHOOK and settings.webhook_configured:
        _send_webhook(rt, settings, notice)
    elif channel == outbox.EMAIL and settings.email_configured:
        _send_email(rt, settings, notice)
    else:
        raise DeliveryError(Reason.NOTIFICATION_NOT_CONFIGURED)


def _send_webhook(rt: Runtime, settings: Settings, notice: AlertNotice) -> None:
    assert settings.notify_webhook_url is not None and settings.notify_webhook_secret is not None
    webhook.send(settings.notify_webhook_url.get_secret_value(),
                 settings.notify_webhook_secret.get_secret_value().encode(), json_body(notice),
                 notice.notification_id, int(rt.clock.timestamp()),
                 client_context(settings.notify_webhook_ca_file))


def _send_email(rt: Runtime, settings: Settings, notice: AlertNotice) -> None:
    assert settings.notify_smtp_host is not None and settings.notify_email_from is not None
    login = None
    if settings.notify_smtp_user is not None and settings.notify_smtp_password is not None:
        login = (settings.notify_smtp_user, settings.notify_smtp_password.get_secret_value())
    message = email.build(notice, settings.notify_email_from, settings.email_recipients,
                          rt.clock.now())
    email.send(message, settings.notify_smtp_host, settings.notify_smtp_port,
               client_context(settings.notify_smtp_ca_file), login)
