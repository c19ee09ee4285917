"""Common and breached passwords (PARAMETERS.md, "password checks"): a bundled list of the
30,000 most common passwords (``data/common_passwords.txt``, from zxcvbn; origin and MIT
licence in ``data/COMMON_PASSWORDS_LICENSE.txt``), read once per process.

Most entries are shorter than the 12 characters a password needs, so an exact match alone
would refuse little: what a guesser tries first against a long-password policy is a common
password stretched to length. A password is therefore refused when, compared without case,

- it is a listed password;
- it is a listed password followed by digits and punctuation only ("sunshine2024!!");
- it repeats one short unit ("qwertyqwerty", "111111111111", "abcabcabcabc"), listed or not.

It is bundled rather than asked of an online breach service: the check works offline, and no
hash prefix of a person's password ever leaves the machine.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_TAIL = re.compile(r"[\d\W_]+$")
"""Digits and punctuation at the end: what people add to a common word to reach a length."""
_SHORTEST_STEM = 4
"""A stem shorter than this ("ab" of "ab123456789012") is too short to call it common."""
_LONGEST_UNIT = 6


@cache
def common_passwords() -> frozenset[str]:
    """The bundled list, lower case."""
    text = (resources.files("sellervault.accounts") / "data" / "common_passwords.txt"
            ).read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def _repeats_a_short_unit(lowered: str) -> bool:
    return any(len(lowered) % size == 0 and lowered == lowered[:size] * (len(lowered) // size)
               for size in range(1, _LONGEST_UNIT + 1))


def is_common(password: str) -> bool:
    """Whether ``password`` is a common one, as the module's docstring defines it."""
    lowered = password.lower()
    listed = common_passwords()
    if lowered in listed or _repeats_a_short_unit(lowered):
        return True
    stem = _TAIL.sub("", lowered)
    return stem != lowered and len(stem) >= _SHORTEST_STEM and stem in listed
