"""Identities: the one place emails and names are normalised and compared (policy A1).

Two spellings that a person reading a screen cannot tell apart are one identity: "admin"
with a Cyrillic a (U+0430), "ADMIN" with a dotted capital I (U+0130), fullwidth "admin"
(U+FF41...) and "admin" are all the generic name the policy refuses, and "pat.picker@" with a
Cyrillic p and a is Pat's mailbox, not a second person's. Comparison goes through the
confusable skeletons of Unicode TS #39, computed by ICU (PyICU), not by a mapping of our own:
the confusables data is large and changes with each Unicode version.

What is stored is the normalised email (``normalize_email``): that is what a person types to
log in, and login compares it exactly, so a lookalike never logs into the account it
imitates. The skeleton-based ``Mailbox.key`` is stored beside it only to refuse a second
account for the same mailbox.

Keys depend on ICU's data, so the ICU version is pinned (``pyicu-wheels==2.15.2``: ICU 77,
Unicode 16): a new version can map characters differently, and the stored keys must then be
recomputed by a migration before new accounts are compared with them.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import icu

# A person is one named human (policy A1): shared and default identities are refused.
GENERIC_NAMES = frozenset({
    "admin", "administrator", "root", "superuser", "test", "tester", "user", "guest", "shared",
    "support", "team", "ops", "operator", "default", "demo", "service", "system", "sysadmin",
})
MAX_LENGTH = 320
"""The longest normalised email or mailbox key (their columns' size). NFKC and skeletons can
lengthen text (the ligature U+FB03 becomes "ffi", a skeleton's "m" becomes "rn"), so the
length is checked after them, not only on what was sent."""

_SKELETONS = icu.SpoofChecker()  # ICU: skeletons of one checker are safe from any thread
_TAG = "+"


def normalize_email(value: str) -> str:
    """The email as stored and as login looks it up: NFKC (fullwidth and other compatibility
    forms become their plain letters), case-folded, trimmed. For ASCII it is exactly the
    ``.strip().lower()`` of earlier versions, so existing accounts still log in."""
    return unicodedata.normalize("NFKC", value).casefold().strip()


def comparison_key(text: str) -> str:
    """The form two identities share when they look alike: NFKC, case fold, the UTS #39
    skeleton, then without combining marks.

    The skeleton alone is not enough: it is case-sensitive (hence the case fold before it)
    and keeps combining marks, so "ADMIN" with a dotted capital I (U+0130), which case-folds
    to i and U+0307, or "admin" with an accent would dodge the generic-name rule. Dropping
    every mark (NFD, remove category Mn, NFC) closes that; the cost is that "rene@" with and
    without its accent count as one mailbox, which errs towards refusing. The skeleton maps
    "m" to "rn" (and "1" to "l"): keys are only ever compared with keys, never shown.
    """
    return _unmarked_skeleton(unicodedata.normalize("NFKC", text).casefold())


def _visual_key(text: str) -> str:
    """``comparison_key`` without the case fold: what ``text`` looks like as written. The
    case fold turns "ADMlN" (a small L) into "admln", which no longer looks like "admin",
    although as written it looks exactly like "ADMIN"."""
    return _unmarked_skeleton(unicodedata.normalize("NFKC", text))


def _unmarked_skeleton(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", _SKELETONS.getSkeleton(0, text))
    unmarked = "".join(char for char in decomposed if unicodedata.category(char) != "Mn")
    return unicodedata.normalize("NFC", unmarked)


_GENERIC_KEYS = frozenset(comparison_key(name) for name in GENERIC_NAMES)
_GENERIC_LOOKS = frozenset(_visual_key(written) for name in GENERIC_NAMES
                           for written in (name, name.upper(), name.title()))


def is_blank(name: str) -> bool:
    """Whether nothing visible is left of ``name``: spaces alone, or zero-width characters,
    which a skeleton drops (a name must still name someone)."""
    return not comparison_key(name).strip()


def is_generic(name: str) -> bool:
    """Whether ``name`` (a whole name, trimmed) is one of GENERIC_NAMES, however spelled:
    equal up to case and lookalikes, or looking like one as written (names are shown as
    written, so "ADM1N" and "ADMlN" pass for "ADMIN"; "adm1n" shows its digit)."""
    clean = name.strip()
    return comparison_key(clean) in _GENERIC_KEYS or _visual_key(clean) in _GENERIC_LOOKS


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A person's email as stored, and the key that says which mailbox it is."""

    email: str
    """Normalised (``normalize_email``), with its ``+tag``: what login compares."""
    local_key: str
    """The comparison key of the local part without its ``+tag``: what the generic-name rule
    looks at, since mail to admin+ops@ reaches the admin mailbox."""
    key: str
    """``local_key``, ``@``, and the comparison key of the domain: one account per key."""

    @property
    def is_generic(self) -> bool:
        return self.local_key in _GENERIC_KEYS


# Full stops that IDNA (UTS #46) reads as the label separator "." (after NFKC, U+FF0E is
# "." already and U+FF61 is U+3002).
_IDNA_DOTS = str.maketrans({"\N{IDEOGRAPHIC FULL STOP}": ".",
                            "\N{HALFWIDTH IDEOGRAPHIC FULL STOP}": "."})


def _domain_as_resolved(domain: str) -> str:
    """The domain as mail to it is delivered: IDNA's other full stops are dots, and a
    trailing dot (the DNS root) names the same domain."""
    return domain.translate(_IDNA_DOTS).rstrip(".")


def mailbox(email: str) -> Mailbox | None:
    """The mailbox of ``email``; None unless it is one local part, one ``@`` and a domain.

    The tag is cut from the key rather than from the text, so a plus-sign lookalike that
    the skeleton maps to ``+`` (HEAVY PLUS SIGN, U+2795) cuts it too. A second ``@`` is
    refused rather than guessed at: which side of it names the mailbox is exactly what an
    attacker would like to choose.
    """
    email = normalize_email(email)
    local, at, domain = email.partition("@")
    if not at or "@" in domain or len(email) > MAX_LENGTH:
        return None
    local_key = comparison_key(local).partition(_TAG)[0]
    domain_key = comparison_key(_domain_as_resolved(domain))
    if not local_key.strip() or not domain_key.strip():
        return None
    key = f"{local_key}@{domain_key}"
    return Mailbox(email, local_key, key) if len(key) <= MAX_LENGTH else None
