"""Buyer pseudonyms: stable per buyer and tenant, unrelated across tenants and keys, and
nothing of the buyer in them."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from sellervault.crypto.blind_index import BlindIndex
from sellervault.crypto.pseudonyms import PATTERN, BuyerPseudonyms

KEY = bytes(range(32))
DIGEST = BlindIndex(bytes(32)).digest("buyer-email", "alex.rivera@example.test")


def test_a_pseudonym_is_stable_for_one_buyer_of_one_tenant() -> None:
    pseudonyms = BuyerPseudonyms(KEY)
    assert pseudonyms.of("acme", "buyer-email", DIGEST) == pseudonyms.of("acme", "buyer-email",
                                                                          DIGEST)


def test_a_pseudonym_is_hmac_sha256_truncated_to_128_bits_under_its_own_key() -> None:
    """The documented construction, recomputed with the standard library."""
    expected = hmac.new(KEY, b"acme\x00buyer-email\x00" + DIGEST, hashlib.sha256).digest()[:16]
    assert BuyerPseudonyms(KEY).of("acme", "buyer-email", DIGEST) == "byr_" + expected.hex()


@pytest.mark.parametrize(("tenant", "kind", "digest", "key"), [
    ("globex", "buyer-email", DIGEST, KEY),  # another tenant
    ("acme", "buyer-phone", DIGEST, KEY),  # another kind of value
    ("acme", "buyer-email", bytes(32), KEY),  # another buyer
    ("acme", "buyer-email", DIGEST, bytes(range(1, 33))),  # another installation's key
])
def test_anything_else_gives_an_unrelated_pseudonym(tenant: str, kind: str, digest: bytes,
                                                    key: bytes) -> None:
    assert (BuyerPseudonyms(key).of(tenant, kind, digest)
            != BuyerPseudonyms(KEY).of("acme", "buyer-email", DIGEST))


def test_a_pseudonym_holds_neither_the_value_nor_its_blind_index_digest() -> None:
    pseudonym = BuyerPseudonyms(KEY).of("acme", "buyer-email", DIGEST)
    assert "alex" not in pseudonym and DIGEST.hex()[:8] not in pseudonym
    assert re.fullmatch(PATTERN, pseudonym)


@pytest.mark.parametrize("value", ["", "byr_", "byr_" + "0" * 31, "byr_" + "0" * 33,
                                   "byr_" + "G" * 32, "BYR_" + "0" * 32, "acc_" + "0" * 32])
def test_only_a_pseudonyms_shape_is_taken_for_one(value: str) -> None:
    assert not re.fullmatch(PATTERN, value)


def test_the_key_is_32_bytes_and_never_shown() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        BuyerPseudonyms(bytes(16))
    assert KEY.hex() not in repr(BuyerPseudonyms(KEY))
