"""The webhook channel: an alert's notice POSTed as JSON over HTTPS (certificate and host name
verified, no redirect followed), signed so the receiver can tell it came from this vault and
was not replayed.

Signature (docs/operations.md, "Alert notifications", for receivers)::

    X-SellerVault-Timestamp: <unix seconds, the sender's clock>
    X-SellerVault-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>

The timestamp is inside the MAC, so a captured request cannot be re-sent later with a fresh
time; a receiver refuses one outside its replay window (``verify``: 5 minutes by default) and
may drop a second delivery with the same ``X-SellerVault-Delivery`` id (a delivery is retried
until its success is recorded, so it can arrive twice). Only ``hmac`` and ``hashlib``: no
cryptography of our own.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ssl
from urllib.parse import urlsplit

from sellervault.audit.events import Reason
from sellervault.notifications.errors import DeliveryError

SCHEME = "v1"
TIMESTAMP_HEADER = "X-SellerVault-Timestamp"
SIGNATURE_HEADER = "X-SellerVault-Signature"
DELIVERY_HEADER = "X-SellerVault-Delivery"
REPLAY_WINDOW_SECONDS = 300
# Short: a slow receiver holds up the notifications behind it (one job, one at a time). Each
# blocking step (connect, TLS handshake, send, each read of the answer) has this long.
TIMEOUT_SECONDS = 10.0


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
    connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=context,
                                             timeout=TIMEOUT_SECONDS)
    try:
        connection.request("POST", target, body=body, headers=headers)
        status = connection.getresponse().status
    except ssl.SSLError:  # (certificate not trusted, wrong name, handshake refused)
        raise DeliveryError(Reason.NOTIFICATION_TLS) from None
    except (OSError, http.client.HTTPException):  # refused, reset, timed out, not HTTP
        raise DeliveryError(Reason.NOTIFICATION_UNREACHABLE) from None
    finally:
        connection.close()
    if not 200 <= status < 300:
        raise DeliveryError(Reason.NOTIFICATION_REFUSED, status)
    return status

