"""Blind indexes: exact-match search over PII without storing it in clear.

HMAC-SHA256 of a normalized value under a per-tenant index key. Each kind of value (email,
phone, postal code) is domain-separated, so equal strings of different kinds never collide,
and the same email in two tenants gives two unrelated digests.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac


class BlindIndex:
    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a blind index key is 32 bytes")
        # HMAC-SHA256 keyed once; each digest continues from a copy of it (three digests per
        # stored order: a copy costs a third of keying HMAC anew).
        self._keyed = hmac.HMAC(key, hashes.SHA256())

    def __repr__(self) -> str:
        return "BlindIndex(key=<redacted>)"

    def digest(self, kind: str, normalized_value: str) -> bytes:
        digest = self._keyed.copy()
        digest.update(kind.encode() + b"\x00" + normalized_value.encode())
        return digest.finalize()
