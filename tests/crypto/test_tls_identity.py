"""sellervault.crypto.tls_identity: the server's TLS key and self-signed certificate that
``init`` makes.

The specification, as tests: an ECDSA P-256 key written owner-only (0600, never over an
existing key); a certificate for localhost, 127.0.0.1 and ::1, self-signed with
ECDSA-SHA256, valid from five minutes before the clock's now for 397 days (the clock given,
never the system's), not a CA, carrying subject and authority key identifiers and the
serverAuth extended key usage only; the returned fingerprint is the certificate's SHA-256.
"""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from sellervault.clock import ManualClock
from sellervault.crypto.tls_identity import VALIDITY_DAYS, generate_self_signed


@pytest.fixture
def generated(tmp_path: Path, clock: ManualClock) -> tuple[x509.Certificate, Path, str]:
    cert_path, key_path = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    fingerprint = generate_self_signed(cert_path, key_path, clock=clock)
    return x509.load_pem_x509_certificate(cert_path.read_bytes()), key_path, fingerprint


def test_key_is_ecdsa_p256_and_matches_the_certificate(
        generated: tuple[x509.Certificate, Path, str]) -> None:
    certificate, key_path, _ = generated
    public = certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)
    private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.public_key() == public


def test_key_file_is_owner_only(generated: tuple[x509.Certificate, Path, str]) -> None:
    _, key_path, _ = generated
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700


def test_an_existing_key_is_never_overwritten(tmp_path: Path, clock: ManualClock) -> None:
    key_path = tmp_path / "key.pem"
    key_path.write_bytes(b"operator's key")
    with pytest.raises(FileExistsError):
        generate_self_signed(tmp_path / "cert.pem", key_path, clock=clock)
    assert key_path.read_bytes() == b"operator's key"


def test_subject_alternative_names(generated: tuple[x509.Certificate, Path, str]) -> None:
    certificate, _, _ = generated
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}


def test_key_identifiers(generated: tuple[x509.Certificate, Path, str]) -> None:
    certificate, _, _ = generated
    ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(certificate.public_key())
    assert aki.key_identifier == ski.digest  # self-signed: the issuer's key is its own


def test_usage_is_server_auth_only_and_not_a_ca(
        generated: tuple[x509.Certificate, Path, str]) -> None:
    certificate, _, _ = generated
    extensions = certificate.extensions
    eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    basic = extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign


def test_self_signed_with_ecdsa_sha256_and_currently_valid(
        generated: tuple[x509.Certificate, Path, str], clock: ManualClock) -> None:
    certificate, _, _ = generated
    assert certificate.issuer == certificate.subject
    assert certificate.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    certificate.verify_directly_issued_by(certificate)  # raises if the signature is wrong
    now = clock.now()
    assert certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime <= timedelta(days=VALIDITY_DAYS, minutes=5)
    assert VALIDITY_DAYS <= 397


def test_returned_fingerprint_is_the_certificate_sha256(
        generated: tuple[x509.Certificate, Path, str]) -> None:
    certificate, _, fingerprint = generated
    assert fingerprint == certificate.fingerprint(hashes.SHA256()).hex(":")


def test_the_validity_period_is_read_from_the_clock(tmp_path: Path) -> None:
    """Not the system's clock: a certificate made by a clock set years ahead starts then."""
    start = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    generate_self_signed(tmp_path / "cert.pem", tmp_path / "key.pem",
                         clock=ManualClock(start))
    certificate = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    assert certificate.not_valid_before_utc == start - timedelta(minutes=5)
    assert certificate.not_valid_after_utc == start + timedelta(days=VALIDITY_DAYS)


def test_each_certificate_has_a_fresh_key(tmp_path: Path, clock: ManualClock) -> None:
    one = generate_self_signed(tmp_path / "a" / "cert.pem", tmp_path / "a" / "key.pem",
                               clock=clock)
    two = generate_self_signed(tmp_path / "b" / "cert.pem", tmp_path / "b" / "key.pem",
                               clock=clock)
    assert one != two
    assert (tmp_path / "a" / "key.pem").read_bytes() != (tmp_path / "b" / "key.pem").read_bytes()
