"""Bearer credentials: random tokens, stored only as keyed hashes.

Tokens are opaque random strings from ``secrets`` with a readable prefix (so a leaked one is
recognisable by secret scanners). The database holds HMAC-SHA256(pepper, token): a copy of
the database alone does not let anyone present a token, and lookups by keyed hash give an
attacker no timing signal they could use without the pepper.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SESSION_PREFIX = "svs_"
API_KEY_PREFIX = "svk_"
ENROLMENT_PREFIX = "sve_"
TOKEN_BYTES = 32


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(TOKEN_BYTES)


def keyed_hash(pepper: bytes, token: str) -> bytes:
    return hmac.new(pepper, token.encode(), hashlib.sha256).digest()


def constant_time_equal(left: bytes, right: bytes) -> bool:
    return hmac.compare_digest(left, right)


def new_password(length: int = 20) -> str:
    """A random one-time password (URL-safe alphabet, ~6 bits per character)."""
    return secrets.token_urlsafe(length)[:length]
