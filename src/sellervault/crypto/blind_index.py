"""Blind indexes: exact-match search over PII without storing it in clear.

HMAC-SHA256 of a normalized value under a per-tenant index key. Each kind of value (email,
phone, postal code) is domain-separated, so equal strings of different kinds never collide,
and the same email in two tenants gives two unrelated digests.
"""

from __future__ import annotations

import hmac


class BlindIndex:
    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a blind index key is 32 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "BlindIndex(key=<redacted>)"

    def digest(self, kind: str, normalized_value: str) -> bytes:
        message = kind.encode() + b"\x00" + normalized_value.encode()
        # The one-shot form: the same HMAC-SHA256 bytes as hmac.new(...).digest(), computed by
        # OpenSSL in one call without building an HMAC object (three digests per stored order).
        return hmac.digest(self._key, message, "sha256")
