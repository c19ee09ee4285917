"""Password hashing (Argon2id through argon2-cffi) and the password rules of PARAMETERS.md
that look at the password alone: its length, the account's name and email, the list of
common passwords (``accounts.common_passwords``). The rules that need the account's past
(``password_history``, ``password_age``) are checked where a password is changed."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from sellervault.accounts.common_passwords import is_common
from sellervault.accounts.errors import PasswordPolicyError

MAX_LENGTH = 128
PROFILE = profiles.RFC_9106_LOW_MEMORY
"""Argon2id, 64 MiB, 3 passes, 4 lanes (RFC 9106's second recommended option)."""
_hasher = PasswordHasher.from_parameters(PROFILE)


@cache
def _dummy_hash() -> str:
    """A hash of a random password: verified against when the account does not exist, so an
    unknown email costs the same time as a wrong password. Made on first use, not at import
    (every CLI command would pay for it); the server makes it at start-up
    (``prepare_timing_equaliser``) so that its first unknown email costs no more either."""
    return _hasher.hash("sellervault-timing-equaliser-not-a-password")


def prepare_timing_equaliser() -> None:
    _dummy_hash()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        matched = _hasher.verify(password_hash or _dummy_hash(), password)
        return matched and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password_rules(password: str, *, min_length: int, email: str | None, name: str) -> None:
    """Length 12..128 (NIST 800-63B-4 favours length over composition), not built from the
    account's own name or email, and not a common or breached password (the first thing a
    guesser tries)."""
    if len(password) < min_length:
        raise PasswordPolicyError(f"the password must be at least {min_length} characters")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(f"the password must be at most {MAX_LENGTH} characters")
    lowered = password.lower()
    parts = [part for part in name.lower().split() if len(part) >= 3]
    if email:
        local = email.lower().split("@", 1)[0]
        if len(local) >= 3:  # as for names: a one- or two-letter part says nothing
            parts.append(local)
    if any(part and part in lowered for part in parts):
        raise PasswordPolicyError("the password may not contain the account's name or email")
    if is_common(password):
        raise PasswordPolicyError("the password is too common (it is, or is built on, one of "
                                  "the most used and breached passwords)")
