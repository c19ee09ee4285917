"""Keys derived from a secret the vault already keeps, one per purpose, so that a new use
of a secret adds no new key file: HKDF-SHA256 (RFC 5869) with the purpose as its ``info``,
which makes keys for different purposes independent."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive_key(secret: bytes, purpose: bytes) -> bytes:
    """A 32-byte key for ``purpose`` from ``secret`` (high-entropy key material, not a
    password)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)
