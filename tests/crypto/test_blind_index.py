"""sellervault.crypto.blind_index: exact-match search over PII without storing it in clear.

The specification, as tests:

- A digest is HMAC-SHA256 under the tenant's 32-byte index key of ``kind || 0x00 || value``;
  the construction is pinned, because stored digests must keep matching after upgrades.
- Deterministic: the same key, kind and value always give the same digest.
- Domain-separated: the same value of two kinds (email, phone, postal code) never shares a
  digest, and the kind/value boundary cannot be shifted.
- Keyed: two tenants' keys give unrelated digests of the same value.
- The key never shows in a ``repr``, and only 32-byte keys are accepted.
"""

from __future__ import annotations

import hashlib
import hmac
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sellervault.crypto.aead import new_key
from sellervault.crypto.blind_index import BlindIndex

KINDS = ("buyer-email", "buyer-phone", "postal-code")
PROPERTY = settings(max_examples=75, deadline=None)
keys = st.binary(min_size=32, max_size=32)
values = st.text(max_size=64)


def test_digest_is_hmac_sha256_of_kind_and_value() -> None:
    key = bytes(range(32))
    expected = hmac.new(key, b"buyer-email\x00jo@example.test", hashlib.sha256).digest()
    assert BlindIndex(key).digest("buyer-email", "jo@example.test") == expected
    assert len(expected) == 32


def test_one_index_serves_many_digests_and_threads_alike() -> None:
    """The keyed state is reused across digests (and the threads of an ingest or a search):
    every digest must still be the plain HMAC of its own message."""
    key = new_key()
    index = BlindIndex(key)
    messages = [(KINDS[n % 3], f"value-{n}") for n in range(600)]

    def expected(kind: str, value: str) -> bytes:
        return hmac.new(key, f"{kind}\x00{value}".encode(), hashlib.sha256).digest()

    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(lambda m: index.digest(*m), messages))
    assert got == [expected(kind, value) for kind, value in messages]


@PROPERTY
@given(key=keys, kind=st.sampled_from(KINDS), value=values)
def test_digest_is_deterministic(key: bytes, kind: str, value: str) -> None:
    assert BlindIndex(key).digest(kind, value) == BlindIndex(key).digest(kind, value)


@PROPERTY
@given(key=keys, kinds=st.lists(st.sampled_from(KINDS), min_size=2, max_size=2, unique=True),
       value=values)
def test_kinds_are_domain_separated(key: bytes, kinds: list[str], value: str) -> None:
    index = BlindIndex(key)
    assert index.digest(kinds[0], value) != index.digest(kinds[1], value)


def test_the_kind_value_boundary_cannot_shift() -> None:
    index = BlindIndex(new_key())
    assert index.digest("postal-code", "12345") != index.digest("postal-code1", "2345")
    assert index.digest("postal-cod", "e12345") != index.digest("postal-code", "12345")


@PROPERTY
@given(key=keys, other=keys, kind=st.sampled_from(KINDS), value=values)
def test_different_keys_give_different_digests(key: bytes, other: bytes, kind: str,
                                               value: str) -> None:
    if other == key:
        other = bytes([key[0] ^ 1]) + key[1:]
    assert BlindIndex(key).digest(kind, value) != BlindIndex(other).digest(kind, value)


@PROPERTY
@given(key=keys, kind=st.sampled_from(KINDS), value=values, other=values)
def test_different_values_give_different_digests(key: bytes, kind: str, value: str,
                                                 other: str) -> None:
    if other == value:
        other = value + "x"
    index = BlindIndex(key)
    assert index.digest(kind, value) != index.digest(kind, other)


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_only_32_byte_keys_are_accepted(size: int) -> None:
    with pytest.raises(ValueError):
        BlindIndex(b"k" * size)


def test_repr_shows_no_key() -> None:
    key = new_key()
    shown = repr(BlindIndex(key))
    assert "redacted" in shown
    assert key.hex() not in shown and repr(key) not in shown
    assert not hasattr(BlindIndex(key), "__dict__")
