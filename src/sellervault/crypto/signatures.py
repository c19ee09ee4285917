"""Ed25519 signatures, for statements someone outside the vault checks with a public key
alone (the security log's checkpoints). The private key is a 32-byte seed: a system key,
wrapped by the root key like any other (``keyring``)."""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class PublicKeyError(ValueError):
    """Not a PEM public key, or not an Ed25519 one."""


class VerifyKey:
    """An Ed25519 public key."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key

    @classmethod
    def from_pem(cls, pem: bytes) -> VerifyKey:
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, UnsupportedAlgorithm):
            raise PublicKeyError("the public key is not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise PublicKeyError("the public key is not an Ed25519 key")
        return cls(key)

    def pem(self) -> str:
        return self._key.public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    @property
    def key_id(self) -> str:
        """The first 16 bytes (hex) of the SHA-256 of the raw 32-byte public key."""
        raw = self._key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return hashlib.sha256(raw).hexdigest()[:32]

    def verifies(self, data: bytes, signature_hex: str) -> bool:
        try:
            self._key.verify(bytes.fromhex(signature_hex), data)
        except (InvalidSignature, ValueError):
            return False
        return True


class SigningKey:
    """An Ed25519 private key from its 32-byte seed."""

    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)

    @property
    def public(self) -> VerifyKey:
        return VerifyKey(self._key.public_key())

    def sign(self, data: bytes) -> str:
        """The signature, hex."""
        return self._key.sign(data).hex()
