"""deletion.certificates: a completed request's certificate of sanitization carries the
appendix G fields, is signed with the certificate key, verifies offline with the public key
alone, and does not once anything in it is changed; its HTML form escapes every value; it
holds no email."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sellervault.deletion import certificates, execution, requests
from sellervault.runtime import Runtime
from tests.deletion.helpers import (
    BUYER_EMAIL,
    OFFICER,
    events,
    forged_certificate,
    ingest,
    officer,
)


def _completed(runtime: Runtime, requested_by: str = "Amazon DSR ticket 4711",
               ) -> tuple[requests.Request, dict[str, Any], bytes]:
    ingest(runtime, "acme", 3, buyer_email=BUYER_EMAIL)
    filed = requests.file_request(runtime, officer(runtime), OFFICER, scope="buyer",
                                  tenant_id="acme", requested_by=requested_by,
                                  buyer_email=BUYER_EMAIL)
    done = execution.execute(runtime, officer(runtime), OFFICER, filed.id)
    assert done.certificate_id is not None
    signed = certificates.get(runtime, officer(runtime), done.certificate_id)
    pem = certificates.public_key(runtime, officer(runtime)).encode()
    return done, signed, pem


def test_a_completed_request_has_a_signed_appendix_g_certificate(runtime: Runtime) -> None:
    done, signed, pem = _completed(runtime)
    certificate = certificates.verify(signed, pem)
    assert certificate["request_id"] == done.id
    assert certificate["sanitization"]["method_type"] == "Purge"
    assert certificate["sanitization"]["method"] == "Cryptographic Erase"
    assert certificate["sanitization"]["verification_method"] == "Full"
    assert certificate["sanitization"]["verification"] == {"keys_destroyed": True,
                                                           "rows_absent": True}
    assert certificate["counts"] == {"orders": 3, "data_keys": 3, "tenant_keys": 0}
    assert certificate["scope"] == {"kind": "buyer", "tenant": "acme",
                                    "amazon_order_id": None, "buyer": done.buyer}
    assert certificate["requested_by"] == "Amazon DSR ticket 4711"
    assert (certificate["performed_by"]["account"], certificate["filed_by"]) == (
        OFFICER, OFFICER)
    assert certificate["times"]["completed"] == done.completed_at.isoformat()  # type: ignore[union-attr]
    assert "deleteme" not in json.dumps(signed)  # (the buyer's email)
    assert [e.target_id for e in events(runtime, "certificates:issue")] == [
        done.certificate_id]


def test_the_signature_binds_every_field(runtime: Runtime) -> None:
    _, signed, pem = _completed(runtime)
    tampered: list[dict[str, Any]] = []
    for path, value in ((("counts", "orders"), 2), (("scope", "tenant"), "globex"),
                        (("times", "completed"), "2020-01-01T00:00:00+00:00"),
                        (("requested_by",), "someone else")):
        changed = copy.deepcopy(signed)
        target = changed["certificate"]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        tampered.append(changed)
    added = copy.deepcopy(signed)
    added["certificate"]["note"] = "added"
    removed = copy.deepcopy(signed)
    del removed["certificate"]["destination"]
    flipped = copy.deepcopy(signed)
    flipped["signature"] = ("0" if signed["signature"][0] != "0" else "1") + \
        signed["signature"][1:]
    for bad in (*tampered, added, removed, flipped):
        with pytest.raises(certificates.CertificateError, match="signature does not match"):
            certificates.verify(bad, pem)
    for bad in ({**signed, "algorithm": "RS256"}, {"certificate": {}}, "nonsense"):
        with pytest.raises(certificates.CertificateError):
            certificates.verify(bad, pem)


def test_another_key_does_not_verify_it(runtime: Runtime) -> None:
    _, signed, _ = _completed(runtime)
    other = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(certificates.CertificateError, match="another key"):
        certificates.verify(signed, other)
    with pytest.raises(certificates.CertificateError, match="signature does not match"):
        certificates.verify({**signed, "key_id": certificates.VerifyKey.from_pem(
            other).key_id}, other)  # the key id claimed too: the signature still says no
    with pytest.raises(certificates.CertificateError, match="PEM"):
        certificates.verify(signed, b"not a key")


def test_the_printable_form_escapes_what_it_shows(runtime: Runtime) -> None:
    _, signed, _ = _completed(runtime, requested_by="<script>alert(1)</script> & co")
    page = certificates.render_html(signed)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert "Cryptographic Erase" in page and signed["signature"] in page
    assert "http" not in page  # nothing fetched from elsewhere


def test_one_certificate_per_request_even_when_run_again(runtime: Runtime) -> None:
    done, _, _ = _completed(runtime)
    again = execution.execute(runtime, officer(runtime), OFFICER, done.id)
    assert again.certificate_id == done.certificate_id
    assert len(events(runtime, "certificates:issue")) == 1


def test_a_buyers_certificate_claims_only_what_destroying_data_keys_did(
        runtime: Runtime) -> None:
    """Only the buyer's data keys went: their old copies (backups, WAL, unvacuumed rows)
    are still wrapped under the tenant's live key, so the certificate must not call them
    unreadable, and names the rotations that would make them so."""
    _, signed, pem = _completed(runtime)
    sanitization = certificates.verify(signed, pem)["sanitization"]
    backups = certificates.verify(signed, pem)["media"]["backups"]
    assert "still in use" in backups and "keys rotate-tenant" in backups
    assert "under the destroyed keys, unreadable" not in backups
    assert "nothing of the scope remains readable" not in sanitization[
        "post_sanitization_classification"]
    assert sanitization["key_rotations_outstanding"] == ["keys rotate-tenant acme",
                                                         "keys rotate-root"]


def test_a_tenants_certificate_says_its_keys_were_destroyed(runtime: Runtime) -> None:
    ingest(runtime, "acme", 2)
    filed = requests.file_request(runtime, officer(runtime), OFFICER, scope="tenant",
                                  tenant_id="acme", requested_by="offboarding")
    done = execution.execute(runtime, officer(runtime), OFFICER, filed.id)
    assert done.certificate_id is not None
    pem = certificates.public_key(runtime, officer(runtime)).encode()
    certificate = certificates.verify(
        certificates.get(runtime, officer(runtime), done.certificate_id), pem)
    assert "destroyed tenant keys, unreadable" in certificate["media"]["backups"]
    assert certificate["sanitization"]["key_rotations_outstanding"] == ["keys rotate-root"]
    assert "nothing of the scope is readable" in certificate["sanitization"][
        "post_sanitization_classification"]


def test_a_file_that_reads_two_ways_is_refused(runtime: Runtime) -> None:
    """A forged scope and counts shown first, the genuine signed object after: ``json``
    keeps the last value of a key, so the signature held while a reader saw the first."""
    _, signed, pem = _completed(runtime)
    forged = forged_certificate(signed)
    with pytest.raises(certificates.CertificateError, match="twice"):
        certificates.parse(forged)
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(certificates.CertificateError, match="not JSON"):
            certificates.parse(json.dumps(signed).replace('"tenant_keys": 0',
                                                          f'"tenant_keys": {constant}'))
    with pytest.raises(certificates.CertificateError, match="not JSON"):
        certificates.parse("{")
    assert certificates.verify(certificates.parse(json.dumps(signed, indent=2)), pem) == \
        signed["certificate"]
