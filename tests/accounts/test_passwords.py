"""Passwords: Argon2id hashes, and the rules of PARAMETERS.md.

A password is 12 to 128 characters (the minimum may be raised by configuration), and may not
contain the account's name (each part of three letters or more) or its email's local part.
Composition rules are deliberately absent (NIST 800-63B-4): a long passphrase of lowercase
words is fine. Stored passwords are Argon2id hashes only; verifying against a missing hash
costs the same work and always fails.
"""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, extract_parameters
from argon2.low_level import Type

from sellervault.accounts import passwords
from sellervault.accounts.errors import PasswordPolicyError
from sellervault.accounts.passwords import check_password_rules, hash_password, verify_password
from sellervault.accounts.service import check_new_person

NAME = "Alice Admin"
EMAIL = "alice.admin@example.test"


def check(password: str, min_length: int = 12, email: str | None = EMAIL,
          name: str = NAME) -> None:
    check_password_rules(password, min_length=min_length, email=email, name=name)


# -- length ----------------------------------------------------------------------------------

@pytest.mark.parametrize("password", [
    "vq7-lmz-28xk", "correct horse battery staple", ("quiet lanterns " * 9)[:128],
    "émigré café🙂🙂🙂🙂",
])
def test_acceptable_passwords(password: str) -> None:
    check(password)


@pytest.mark.parametrize("password", ["", "x" * 11, "Tr0ub4dor&3"])
def test_shorter_than_12_is_refused(password: str) -> None:
    with pytest.raises(PasswordPolicyError, match="at least 12"):
        check(password)


def test_longer_than_128_is_refused() -> None:
    with pytest.raises(PasswordPolicyError, match="at most 128"):
        check("x" * 129)


def test_configured_minimum_raises_the_bar() -> None:
    check("vq7-lmz-28xk-rr4", min_length=16)
    with pytest.raises(PasswordPolicyError, match="at least 16"):
        check("vq7-lmz-28xk-rr", min_length=16)


def test_error_never_echoes_the_password() -> None:
    with pytest.raises(PasswordPolicyError) as caught:
        check("alice-in-wonderland-2025")
    assert "wonderland" not in str(caught.value)


# -- not built from the account's own name or email -----------------------------------------

@pytest.mark.parametrize("password", [
    "alice-in-wonderland-2025",  # first name
    "my ADMIN password 2025",  # last name, any case
    "xxalice.admin@worxx",  # the email's local part
    "ALICE.ADMIN!2025-xyz",
])
def test_password_containing_name_or_email_is_refused(password: str) -> None:
    with pytest.raises(PasswordPolicyError, match="name or email"):
        check(password)


def test_email_local_part_alone_is_checked() -> None:
    """A local part unrelated to the name (a nickname, a role alias) is checked too."""
    with pytest.raises(PasswordPolicyError, match="name or email"):
        check("zz-Sunny99-zz-zz", email="sunny99@example.test", name="Dana Xu")


def test_short_name_parts_do_not_block_everything() -> None:
    """Parts under three letters ("Xu", "Li") would refuse half of all passphrases."""
    check("a quiet xu river at dusk", email="c.x@example.test", name="Carol Xu")


def test_service_without_email_checks_the_name_only() -> None:
    check("a long passphrase for ci", email=None, name="Seller Ingest")
    with pytest.raises(PasswordPolicyError):
        check("seller-passphrase-2025", email=None, name="Seller Ingest")


def test_new_person_is_checked_before_anything_is_written() -> None:
    with pytest.raises(PasswordPolicyError):
        check_new_person(email=EMAIL, name=NAME, password="short", min_length=12)
    with pytest.raises(PasswordPolicyError):
        check_new_person(email=" Alice.Admin@Example.test ", name=NAME,
                         password="xx-ALICE.ADMIN-xx", min_length=12)
    check_new_person(email=EMAIL, name=NAME, password="correct horse battery staple",
                     min_length=12)


# -- not a common or breached password (accounts.common_passwords) --------------------------

@pytest.mark.parametrize("password", [
    "qwerty123456", "1qaz2wsx3edc", "Password1234", "sunshine2024!!", "monkeymonkey",
    "111111111111",
])
def test_common_passwords_are_refused(password: str) -> None:
    with pytest.raises(PasswordPolicyError, match="too common") as caught:
        check(password)
    assert password.lower() not in str(caught.value).lower()


# -- Argon2id --------------------------------------------------------------------------------

@pytest.mark.usefixtures("production_passwords")
def test_hash_is_argon2id_with_a_fresh_salt() -> None:
    first = hash_password("correct horse battery staple")
    second = hash_password("correct horse battery staple")
    assert first.startswith("$argon2id$v=19$")
    assert first != second
    assert "correct horse" not in first
    assert not PasswordHasher().check_needs_rehash(first)  # the library's current profile


@pytest.mark.usefixtures("production_passwords")
def test_hash_parameters_are_at_least_rfc_9106_low_memory() -> None:
    params = extract_parameters(hash_password("correct horse battery staple"))
    assert params.type is Type.ID
    assert params.memory_cost >= 64 * 1024
    assert params.time_cost >= 3
    assert params.salt_len >= 16
    assert (params.parallelism, params.hash_len) == (4, 32)


@pytest.mark.usefixtures("production_passwords")
def test_the_timing_equaliser_costs_what_a_real_hash_costs() -> None:
    assert extract_parameters(passwords._dummy_hash()) == extract_parameters(
        hash_password("correct horse battery staple"))


def test_verify_accepts_the_password_and_nothing_else() -> None:
    stored = hash_password("correct horse battery staple")
    assert verify_password(stored, "correct horse battery staple")
    for wrong in ("correct horse battery stapl", "Correct horse battery staple", "",
                  "correct horse battery staple "):
        assert not verify_password(stored, wrong)


@pytest.mark.parametrize("stored", [None, "", "plain text password", "$argon2id$v=19$broken",
                                    "$2b$12$abcdefghijklmnopqrstuu5Ck7J0pC0Q7y1a6l0a9Z4E1KXW"])
def test_verify_fails_closed_on_missing_or_foreign_hashes(stored: str | None) -> None:
    assert not verify_password(stored, "plain text password")


def test_the_timing_equaliser_is_not_a_password() -> None:
    """Unknown accounts are verified against a dummy hash whose password is in the source:
    knowing it must not log anyone in."""
    assert not verify_password(None, "sellervault-timing-equaliser-not-a-password")
    assert passwords._dummy_hash().startswith("$argon2id$")
