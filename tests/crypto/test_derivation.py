"""crypto.derivation: HKDF-SHA256 as RFC 5869 defines it, one independent key per purpose."""

from __future__ import annotations

from sellervault.crypto.derivation import derive_key


def test_rfc_5869_test_case_3() -> None:
    """No salt, no info: the first 32 bytes of the RFC's 42-byte OKM (HKDF-Expand's first
    block does not depend on the length asked)."""
    assert derive_key(b"\x0b" * 22, b"").hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d")


def test_each_purpose_and_secret_gives_its_own_key() -> None:
    keys = {derive_key(secret, purpose) for secret in (b"s" * 32, b"t" * 32)
            for purpose in (b"backup manifest", b"another purpose")}
    assert len(keys) == 4 and all(len(key) == 32 for key in keys)
