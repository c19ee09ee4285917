"""sellervault.crypto.credentials: bearer tokens, stored only as keyed hashes.

The specification, as tests: tokens carry their readable prefix followed by 256 random bits
(URL-safe base64, 43 characters) and never repeat; the stored form is HMAC-SHA256 under the
pepper, so it depends on the pepper as well as on the token; one-time passwords have the
asked length from the URL-safe alphabet and never repeat.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sellervault.crypto.credentials import (
    API_KEY_PREFIX,
    SESSION_PREFIX,
    constant_time_equal,
    keyed_hash,
    new_password,
    new_token,
)

URLSAFE = re.compile(r"[A-Za-z0-9_-]+")
PROPERTY = settings(max_examples=75, deadline=None)
peppers = st.binary(min_size=32, max_size=32)
tokens = st.text(min_size=1, max_size=64)


@pytest.mark.parametrize("prefix", [SESSION_PREFIX, API_KEY_PREFIX])
def test_tokens_have_the_prefix_and_256_random_bits(prefix: str) -> None:
    token = new_token(prefix)
    assert token.startswith(prefix)
    body = token.removeprefix(prefix)
    assert len(body) >= 43
    assert URLSAFE.fullmatch(body)
    assert len(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) >= 32


def test_prefixes_are_distinct_and_recognisable() -> None:
    assert SESSION_PREFIX != API_KEY_PREFIX
    assert SESSION_PREFIX.startswith("sv") and API_KEY_PREFIX.startswith("sv")


def test_tokens_never_repeat() -> None:
    made = [new_token(API_KEY_PREFIX) for _ in range(1000)]
    assert len(set(made)) == len(made)
    # every position of the body varies: no fixed or counter-like part
    bodies = [token.removeprefix(API_KEY_PREFIX) for token in made]
    assert all(len({body[i] for body in bodies}) > 16 for i in range(42))


def test_keyed_hash_is_hmac_sha256_under_the_pepper() -> None:
    pepper = bytes(range(32))
    expected = hmac.new(pepper, b"svk_example", hashlib.sha256).digest()
    assert keyed_hash(pepper, "svk_example") == expected
    assert len(expected) == 32


@PROPERTY
@given(pepper=peppers, other=peppers, token=tokens)
def test_keyed_hash_depends_on_the_pepper(pepper: bytes, other: bytes, token: str) -> None:
    if other == pepper:
        other = bytes([pepper[0] ^ 1]) + pepper[1:]
    assert keyed_hash(pepper, token) != keyed_hash(other, token)
    assert keyed_hash(pepper, token) != hashlib.sha256(token.encode()).digest()


@PROPERTY
@given(pepper=peppers, token=tokens, other=tokens)
def test_keyed_hash_depends_on_the_token(pepper: bytes, token: str, other: str) -> None:
    assert keyed_hash(pepper, token) == keyed_hash(pepper, token)
    assert (keyed_hash(pepper, token) == keyed_hash(pepper, other)) == (token == other)


def test_constant_time_equal() -> None:
    digest = keyed_hash(b"p" * 32, "svs_token")
    assert constant_time_equal(digest, keyed_hash(b"p" * 32, "svs_token"))
    assert not constant_time_equal(digest, keyed_hash(b"p" * 32, "svs_other"))
    assert not constant_time_equal(digest, digest[:-1])


@pytest.mark.parametrize("length", [12, 20, 32, 64])
def test_passwords_have_the_asked_length_and_alphabet(length: int) -> None:
    password = new_password(length)
    assert len(password) == length
    assert URLSAFE.fullmatch(password)


def test_passwords_never_repeat() -> None:
    made = {new_password() for _ in range(1000)}
    assert len(made) == 1000
    assert all(len(password) == 20 for password in made)
