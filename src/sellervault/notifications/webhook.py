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
import ssl

import httpx

from sellervault.audit.events import Reason
from sellervault.notifications.errors import DeliveryError

SCHEME = "v1"
TIMESTAMP_HEADER = "X-SellerVault-Timestamp"
SIGNATURE_HEADER = "X-SellerVault-Signature"
DELIVERY_HEADER = "X-SellerVault-Delivery"
REPLAY_WINDOW_SECONDS = 300
# Short: a slow receiver holds up the notifications behind it (one job, one at a time).
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


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
    read: nothing of it is needed, and a receiver could send a large one."""
    headers = {"Content-Type": "application/json", "User-Agent": "SellerVault",
               TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body),
               DELIVERY_HEADER: delivery_id}
    try:
        # trust_env off: no proxy or CA bundle from the environment decides where alerts go
        with (httpx.Client(verify=context, timeout=TIMEOUT, follow_redirects=False,
                           trust_env=False) as client,
              client.stream("POST", url, content=body, headers=headers) as response):
            status = response.status_code
    except httpx.HTTPError as exc:
        raise DeliveryError(_reason_of(exc)) from None
    if not 200 <= status < 300:
        raise DeliveryError(Reason.NOTIFICATION_REFUSED, status)
    return status


def _reason_of(exc: BaseException) -> Reason:
    """TLS failures (an untrusted certificate, a wrong name) apart from the rest, which is
    the receiver unreachable or not answering in time."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return Reason.NOTIFICATION_TLS
        seen = seen.__cause__ or seen.__context__
    return Reason.NOTIFICATION_UNREACHABLE
