"""crypto.signatures: Ed25519 from a 32-byte seed; a signature verifies over its own bytes
only, with its own key only; a public key travels as PEM, and anything else is refused."""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sellervault.crypto.signatures import PublicKeyError, SigningKey, VerifyKey


def test_a_signature_verifies_over_its_data_with_its_key_only() -> None:
    key = SigningKey(secrets.token_bytes(32))
    signature = key.sign(b"statement")
    assert key.public.verifies(b"statement", signature)
    assert not key.public.verifies(b"statement!", signature)
    assert not SigningKey(secrets.token_bytes(32)).public.verifies(b"statement", signature)
    assert not key.public.verifies(b"statement", "not hex")


def test_the_same_seed_is_the_same_key_and_its_pem_round_trips() -> None:
    seed = secrets.token_bytes(32)
    public = SigningKey(seed).public
    assert SigningKey(seed).public.key_id == public.key_id and len(public.key_id) == 32
    again = VerifyKey.from_pem(public.pem().encode())
    assert again.key_id == public.key_id
    assert again.verifies(b"x", SigningKey(seed).sign(b"x"))


@pytest.mark.parametrize("pem", [
    b"not a key",
    generate_private_key(SECP256R1()).public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
])
def test_anything_but_an_ed25519_public_key_is_refused(pem: bytes) -> None:
    with pytest.raises(PublicKeyError):
        VerifyKey.from_pem(pem)
