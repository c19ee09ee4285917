"""AES-256-GCM recipe: the only way the rest of SellerVault encrypts bytes.

Callers never choose nonces or formats. Every ciphertext is bound to a context (associated
data) describing *where* it belongs, so a ciphertext copied to another row, tenant or record
type fails to decrypt.

Format (version 1): ``0x01 || nonce (12 bytes, random) || ciphertext || tag (16 bytes)``.
A data key must be retired long before 2**32 encryptions (NIST SP 800-38D random-nonce bound);
per-order data keys encrypt a handful of records each, so the bound is never approached.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sellervault.crypto.errors import DecryptionError

FORMAT_V1 = 0x01
_FORMAT_V1_PREFIX = bytes([FORMAT_V1])
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32


def _bind_json(parts: Sequence[str | int]) -> bytes:
    return json.dumps(list(parts), separators=(",", ":"), ensure_ascii=True).encode()


def bind(*parts: str | int) -> bytes:
    """Encode associated data unambiguously (a JSON array), so ("a|b","c") != ("a","b|c").

    The output is exactly ``json.dumps(list(parts), separators=(",", ":"), ensure_ascii=True)``;
    plain ``str`` and ``int`` parts (the hot path: one call per sealed record) are encoded
    with the json module's own C string encoder, anything else goes through ``json.dumps``.
    """
    pieces = []
    for part in parts:
        if type(part) is str:
            pieces.append(encode_basestring_ascii(part))
        elif type(part) is int:
            pieces.append(int.__repr__(part))
        else:  # bool, str/int subclasses (enums): let json decide, byte for byte
            return _bind_json(parts)
    return ("[" + ",".join(pieces) + "]").encode()


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """Encrypt ``plaintext`` under ``key`` bound to ``associated_data``; a fresh nonce each call."""
    return Cipher(key).seal(plaintext, associated_data)


def open_sealed(key: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    """Decrypt a version-1 ciphertext; any failure at all raises the same DecryptionError."""
    if len(key) != KEY_BYTES:
        raise DecryptionError()
    return Cipher(key).open(sealed, associated_data)


class Cipher:
    """A key held for repeated use (the AESGCM object is built once, not per call)."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Cipher(key=<redacted>)"

    def seal(self, plaintext: bytes, associated_data: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return _FORMAT_V1_PREFIX + nonce + self._aead.encrypt(nonce, plaintext, associated_data)

    def open(self, sealed: bytes, associated_data: bytes) -> bytes:
        if len(sealed) < 1 + NONCE_BYTES + TAG_BYTES or sealed[0] != FORMAT_V1:
            raise DecryptionError()
        try:
            return self._aead.decrypt(
                sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :], associated_data
            )
        except InvalidTag:
            raise DecryptionError() from None
