"""The webhook channel: an alert's notice POSTed as JSON over HTTPS (certificate and host name
verified, no redirect followed), signed so the receiver can tell it came from this vault and
was not replayed.

Signature (docs/operations.md, "Alert notifications", for receivers)::

    X-SellerVault-Timestamp: <unix seconds, the sender's clock>
    X-SellerVault-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>

The timestamp is inside the MAC, so a captured request cannot be re-sent later with a fresh
time; a receiver refuses one outside its replay window (``verify``: 5 minutes by default) and
drops a second delivery with the same ``notification_id`` (a delivery is retried until its
success is recorded, so it can arrive twice; and anyone who saw a request can re-send it within
the window). That id is taken from the signed body (``verify_delivery``), never from the
``X-SellerVault-Delivery`` header: no header but the timestamp is signed, so a replay can carry
any delivery header it likes. Only ``hmac`` and ``hashlib``: no cryptography of our own.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import ssl
from urllib.parse import urlsplit

from sellervault.audit.events import Reason
from sellervault.notifications.deadline import Deadline
from sellervault.notifications.errors import DeliveryError

SCHEME = "v1"
TIMESTAMP_HEADER = "X-SellerVault-Timestamp"
SIGNATURE_HEADER = "X-SellerVault-Signature"
DELIVERY_HEADER = "X-SellerVault-Delivery"
REPLAY_WINDOW_SECONDS = 300
# Short: a slow receiver holds up the notifications behind it (one job, one at a time). Each
# blocking step (connect, TLS handshake, send, each read of the answer) has this long...
TIMEOUT_SECONDS = 10.0
# ...and the whole attempt this long: a peer that drips its answer a byte at a time, each
# within the step's timeout, is cut off here (``deadline``).
DEADLINE_SECONDS = 30.0


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify(secret: bytes, body: bytes, timestamp: str, signature: str, now: float,
           window_seconds: int = REPLAY_WINDOW_SECONDS) -> bool:
    """For a receiver written in Python (and the tests): whether ``body`` with these two
    headers was signed with ``secret`` no more than ``window_seconds`` from ``now`` (either
    way: clocks drift). ``signature`` may list several comma-separated ``v1=`` values (a
    sender between two secrets); any one matching is enough. Constant-time comparison."""
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if abs(now - int(timestamp)) > window_seconds:
        return False
    expected = sign(secret, int(timestamp), body)
    return any(hmac.compare_digest(expected.encode(), candidate.strip().encode())
               for candidate in signature.split(",") if candidate.isascii())


def verify_delivery(secret: bytes, body: bytes, timestamp: str, signature: str, now: float,
                    window_seconds: int = REPLAY_WINDOW_SECONDS) -> str | None:
    """For a receiver written in Python: the delivery's ``notification_id``, read from the
    signed body, if ``verify`` accepts it; else None (and None for a signed body without
    one). This, not the ``X-SellerVault-Delivery`` header, is what a receiver de-duplicates
    on: the header is not signed, so a request replayed within the window with a new header
    value would pass for a new delivery."""
    if not verify(secret, body, timestamp, signature, now, window_seconds):
        return None
    try:
        document = json.loads(body)
    except ValueError:  # (signed by us, so never; but a receiver's check must not raise)
        return None
    found = document.get("notification_id") if isinstance(document, dict) else None
    return found if isinstance(found, str) and found else None


def send(url: str, secret: bytes, body: bytes, delivery_id: str, timestamp: int,
         context: ssl.SSLContext) -> int:
    """POST ``body``; the HTTP status of a 2xx answer. Anything else raises ``DeliveryError``
    (a 3xx too: a redirect is not followed, it could lead anywhere). The answer's body is never
    read: nothing of it is needed, and a receiver could send a large one.

    The standard library's ``http.client``, not an HTTP client library: it follows no
    redirect, reads no proxy or CA bundle from the environment, and logs nothing (httpx logs
    every request's URL at INFO, and a webhook URL can hold a token)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:  # (the settings refuse it already)
        raise DeliveryError(Reason.NOTIFICATION_NOT_CONFIGURED)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"Content-Type": "application/json", "User-Agent": "SellerVault",
               TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body),
               DELIVERY_HEADER: delivery_id}
    deadline = Deadline(DEADLINE_SECONDS)
    try:
        with deadline:
            status = _post(_Connection(parts.hostname, parts.port, context, deadline), target,
                           body, headers)
    except (OSError, http.client.HTTPException) as exc:
        # (ssl.SSLError: certificate not trusted, wrong name, handshake refused; the rest:
        # refused, reset, timed out, not HTTP, or cut by the deadline)
        tls = isinstance(exc, ssl.SSLError) and not deadline.expired
        raise DeliveryError(Reason.NOTIFICATION_TLS if tls
                            else Reason.NOTIFICATION_UNREACHABLE) from None
    if deadline.expired:  # (http.client takes the cut for the end of the headers: not a 2xx)
        raise DeliveryError(Reason.NOTIFICATION_UNREACHABLE)
    if not 200 <= status < 300:
        raise DeliveryError(Reason.NOTIFICATION_REFUSED, status)
    return status


class _Connection(http.client.HTTPSConnection):
    """``http.client.HTTPSConnection`` whose TCP connection is made (and watched) by the
    attempt's deadline, then wrapped in TLS (no proxy tunnel: none is ever used)."""

    def __init__(self, host: str, port: int | None, context: ssl.SSLContext,
                 deadline: Deadline) -> None:
        super().__init__(host, port, timeout=TIMEOUT_SECONDS, context=context)
        self._tls = context
        self._deadline = deadline

    def connect(self) -> None:
        connection = self._deadline.connect((self.host, self.port), self.timeout)
        try:
            self.sock = self._tls.wrap_socket(connection, server_hostname=self.host)
        except BaseException:
            connection.close()
            raise


def _post(connection: _Connection, target: str, body: bytes, headers: dict[str, str]) -> int:
    """The request and the answer's status line and headers (never its body)."""
    try:
        connection.request("POST", target, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()
