"""Common and breached passwords: a bundled list of at least 20,000 (zxcvbn's 30,000, its
licence beside it), compared without case; a listed password stretched to length with digits
and punctuation, or a short unit repeated, counts as listed. Passphrases and random strings
pass."""

from __future__ import annotations

from importlib import resources

import pytest

from sellervault.accounts.common_passwords import common_passwords, is_common


def test_the_bundled_list_has_at_least_20000_entries_and_its_licence() -> None:
    assert len(common_passwords()) >= 20_000
    data = resources.files("sellervault.accounts") / "data"
    licence = (data / "COMMON_PASSWORDS_LICENSE.txt").read_text(encoding="utf-8")
    assert "MIT License" in licence and "zxcvbn" in licence


@pytest.mark.parametrize("password", ["password", "123456", "dragon", "qwertyuiop",
                                      "1q2w3e4r5t6y", "leavemealone"])
def test_listed_passwords_are_common(password: str) -> None:
    assert is_common(password)


@pytest.mark.parametrize("password", ["PASSWORD", "LeaveMeAlone", "QwErTyUiOp"])
def test_case_does_not_hide_a_listed_password(password: str) -> None:
    assert is_common(password)


@pytest.mark.parametrize("password", ["password2024!", "dragon1234567", "football_99!!",
                                      "letmein.12345"])
def test_a_listed_password_stretched_with_digits_and_punctuation_is_common(
        password: str) -> None:
    assert is_common(password)


@pytest.mark.parametrize("password", ["aaaaaaaaaaaa", "abcabcabcabc", "qwertyqwerty",
                                      "121212121212"])
def test_a_repeated_short_unit_is_common(password: str) -> None:
    assert is_common(password)


@pytest.mark.parametrize("password", [
    "correct horse battery staple", "vq7-lmz-28xk", "a much longer passphrase 42",
    "ab1234567890123",  # a two-letter stem says nothing
    "dragonfly over the marsh",
])
def test_passphrases_and_random_strings_are_not(password: str) -> None:
    assert not is_common(password)
