"""notifications.webhook: the body signed ``v1=HMAC-SHA256(secret, timestamp "." body)``
(checked against an independent HMAC written from RFC 2104), sent over verified TLS to a real
HTTPS receiver that checks it; a non-2xx answer or a redirect is a refused delivery (the
redirect not followed), an untrusted certificate a TLS failure, a closed port unreachable, a
receiver that stalls (no TLS handshake, an answer dripped a byte at a time) unreachable at the
attempt's overall deadline.

``verify`` is tested from an attacker's side: a tampered body, a timestamp moved, an old
(replayed) or future timestamp, the wrong secret, another scheme, junk: all refused. And a
request replayed within the window under another ``X-SellerVault-Delivery`` header is the same
delivery by the id receivers de-duplicate on (``verify_delivery``: the signed body's)."""

from __future__ import annotations

import hashlib
import http.client
import ssl
import time
from urllib.parse import urlsplit

import pytest

from sellervault.audit.events import Reason
from sellervault.notifications import webhook
from sellervault.notifications.errors import DeliveryError
from sellervault.notifications.tls import client_context
from tests.notifications.peers import (
    WEBHOOK_SECRET,
    TlsFiles,
    finishes_within,
    https_receiver,
    stalling_https,
    stalling_peer,
)
from tests.support import free_port

SECRET = WEBHOOK_SECRET.encode()
NOTIFICATION_ID = "ntf_89abcdef0123456789abcdef"
BODY = (b'{"alert":{"id":"alr_0123456789abcdef01234567"},"notification_id":"'
        + NOTIFICATION_ID.encode() + b'","type":"alert","version":1}')
NOW = 1_796_000_000


def rfc2104_hmac_sha256(key: bytes, message: bytes) -> str:
    """HMAC from its definition (RFC 2104), independent of the ``hmac`` module."""
    block = 64
    key = key.ljust(block, b"\0") if len(key) <= block else hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + message).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in key) + inner).hexdigest()


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    assert webhook.sign(SECRET, NOW, BODY) == "v1=" + rfc2104_hmac_sha256(
        SECRET, f"{NOW}.".encode() + BODY)
    # RFC 4231 test case 2, through the same independent function: it is right.
    assert rfc2104_hmac_sha256(b"Jefe", b"what do ya want for nothing?") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_a_receiver_accepts_a_fresh_signature_from_either_side_of_its_clock() -> None:
    signature = webhook.sign(SECRET, NOW, BODY)
    for now in (NOW, NOW + 299, NOW - 299):
        assert webhook.verify(SECRET, BODY, str(NOW), signature, now)
        assert webhook.verify_delivery(SECRET, BODY, str(NOW), signature, now) == (
            NOTIFICATION_ID)
    # a sender between two secrets sends both; either matching is enough
    both = webhook.sign(b"an older secret, 32 characters..", NOW, BODY) + ", " + signature
    assert webhook.verify(SECRET, BODY, str(NOW), both, NOW)


@pytest.mark.parametrize("attack", [
    "tampered body", "timestamp moved", "replayed late", "from the future", "wrong secret",
    "another scheme", "bare hex", "empty", "timestamp not a number", "signature of nothing",
])
def test_a_forged_or_replayed_delivery_is_refused(attack: str) -> None:
    body, timestamp, now = BODY, str(NOW), float(NOW)
    signature = webhook.sign(SECRET, NOW, BODY)
    if attack == "tampered body":
        body = BODY.replace(b"alr_0", b"alr_1")
    elif attack == "timestamp moved":  # an old capture re-sent with a fresh time header
        timestamp, now = str(NOW + 3600), float(NOW + 3600)
    elif attack == "replayed late":
        now = float(NOW + 301)
    elif attack == "from the future":
        now = float(NOW - 301)
    elif attack == "wrong secret":
        signature = webhook.sign(b"a different secret of 32 chars..", NOW, BODY)
    elif attack == "another scheme":
        signature = signature.replace("v1=", "v0=")
    elif attack == "bare hex":
        signature = signature.removeprefix("v1=")
    elif attack == "empty":
        signature = ""
    elif attack == "timestamp not a number":
        timestamp = f"{NOW}.0"
    elif attack == "signature of nothing":
        signature = webhook.sign(SECRET, NOW, b"")
    assert not webhook.verify(SECRET, body, timestamp, signature, now)
    assert webhook.verify_delivery(SECRET, body, timestamp, signature, now) is None


def test_a_replay_under_another_delivery_header_is_the_same_delivery(tls: TlsFiles) -> None:
    """The delivery header is not signed: an eavesdropper re-sends a captured request within
    the window under a new one. By the signed id (what the docs have receivers de-duplicate
    on) it is the delivery already accepted."""
    context = client_context(tls.certificate)
    with https_receiver(tls, SECRET) as receiver:
        webhook.send(receiver.url, SECRET, BODY, NOTIFICATION_ID, int(time.time()), context)
        [original] = receiver.deliveries
        replayed = {**original.headers, "x-sellervault-delivery": "ntf_" + "f" * 24}
        url = urlsplit(receiver.url)
        connection = http.client.HTTPSConnection(url.netloc, context=context, timeout=10)
        try:
            connection.request("POST", url.path, body=original.body, headers=replayed)
            assert connection.getresponse().status == 200
        finally:
            connection.close()
    [_, replay] = receiver.deliveries
    assert replay.verified  # (within the window: the signature alone does not tell)
    assert replay.headers["x-sellervault-delivery"] != original.headers["x-sellervault-delivery"]
    assert receiver.delivery_ids() == [NOTIFICATION_ID, NOTIFICATION_ID]  # a duplicate


def test_a_signed_body_without_a_notification_id_gives_no_delivery_id() -> None:
    body = b'{"alert":{"id":"alr_0123456789abcdef01234567"},"type":"alert","version":1}'
    signature = webhook.sign(SECRET, NOW, body)
    assert webhook.verify(SECRET, body, str(NOW), signature, NOW)
    assert webhook.verify_delivery(SECRET, body, str(NOW), signature, NOW) is None


def test_a_delivery_reaches_a_real_https_receiver_signed(tls: TlsFiles) -> None:
    with https_receiver(tls, SECRET) as receiver:
        stamp = int(time.time())
        assert webhook.send(receiver.url, SECRET, BODY, "ntf_1", stamp,
                            client_context(tls.certificate)) == 200
    [delivery] = receiver.deliveries
    assert delivery.verified and delivery.body == BODY
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["x-sellervault-delivery"] == "ntf_1"
    assert delivery.headers["x-sellervault-timestamp"] == str(stamp)


@pytest.mark.parametrize("status", [500, 404, 302])
def test_an_answer_other_than_2xx_is_refused_and_a_redirect_not_followed(
        tls: TlsFiles, status: int) -> None:
    with https_receiver(tls, SECRET) as receiver:
        receiver.statuses.append(status)
        with pytest.raises(DeliveryError) as failed:
            webhook.send(receiver.url, SECRET, BODY, "ntf_2", NOW,
                         client_context(tls.certificate))
    assert (failed.value.reason, failed.value.status) == (Reason.NOTIFICATION_REFUSED, status)
    assert len(receiver.deliveries) == 1


@pytest.mark.parametrize("trusted", ["system store", "another CA"])
def test_a_certificate_not_trusted_is_a_tls_failure_and_nothing_is_sent(
        tls: TlsFiles, other_tls: TlsFiles, trusted: str) -> None:
    context = client_context(None if trusted == "system store" else other_tls.certificate)
    with https_receiver(tls, SECRET) as receiver, pytest.raises(DeliveryError) as failed:
        webhook.send(receiver.url, SECRET, BODY, "ntf_3", NOW, context)
    assert failed.value.reason is Reason.NOTIFICATION_TLS
    assert receiver.deliveries == []


def test_a_name_the_certificate_does_not_carry_is_a_tls_failure(tls: TlsFiles) -> None:
    """127.0.0.2 is loopback too (Linux), but the certificate names 127.0.0.1 only."""
    with (https_receiver(tls, SECRET, host="127.0.0.2") as receiver,
          pytest.raises(DeliveryError) as failed):
        webhook.send(receiver.url, SECRET, BODY, "ntf_4", NOW, client_context(tls.certificate))
    assert failed.value.reason is Reason.NOTIFICATION_TLS
    assert receiver.deliveries == []


def test_nobody_listening_is_unreachable(tls: TlsFiles) -> None:
    with pytest.raises(DeliveryError) as failed:
        webhook.send(f"https://127.0.0.1:{free_port()}/", SECRET, BODY, "ntf_5", NOW,
                     client_context(tls.certificate))
    assert failed.value.reason is Reason.NOTIFICATION_UNREACHABLE


def test_the_client_context_verifies_names_and_certificates(tls: TlsFiles) -> None:
    context = client_context(tls.certificate)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("stall", ["handshake", "headers"])
def test_a_receiver_that_stalls_fails_the_attempt_at_its_deadline(
        tls: TlsFiles, monkeypatch: pytest.MonkeyPatch, stall: str) -> None:
    monkeypatch.setattr(webhook, "DEADLINE_SECONDS", 0.5)
    monkeypatch.setattr(webhook, "TIMEOUT_SECONDS", 60.0)  # (no step times out: only the deadline)
    with stalling_peer(stalling_https(tls, stall)) as port, \
            pytest.raises(DeliveryError) as failed:
        started = time.monotonic()
        finishes_within(10, lambda: webhook.send(f"https://127.0.0.1:{port}/", SECRET, BODY,
                                                 NOTIFICATION_ID, NOW,
                                                 client_context(tls.certificate)))
    assert failed.value.reason is Reason.NOTIFICATION_UNREACHABLE
    assert time.monotonic() - started < 3
