"""Buyer pseudonyms: how the security log names a buyer without holding anything of theirs.

An event about one buyer's order carries ``byr_`` and 32 hex digits: HMAC-SHA256, truncated to
128 bits, under a system key of its own (``buyer-pseudonym``, wrapped by the root key, used
for nothing else), of the tenant and the buyer's blind-index digest (email, else phone). So:

- the log holds no value of the buyer, and no digest that the blind index or any other key
  would recognise: a reader of the log alone cannot test a guessed email against it;
- the same buyer in one tenant always has the same pseudonym (an investigator finds every
  event about them, and the retrieval-volume detector counts distinct buyers), and a buyer
  of two tenants has two unrelated ones (tenants stay apart in the log as in the data);
- computing one needs the tenant's index key and this key, which only the service holds:
  an investigator asks the service (``records.service.buyer_pseudonym``).

The blind-index digest is the input, not the email, so reading a masked order (which
decrypts nothing) can still name its buyer: the digest is stored beside the order.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac

PSEUDONYM_KEY = "buyer-pseudonym"
PREFIX = "byr_"
PATTERN = r"^byr_[0-9a-f]{32}$"
"""A pseudonym's shape: what a filter of the log by buyer accepts."""


class BuyerPseudonyms:
    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a pseudonym key is 32 bytes")
        self._keyed = hmac.HMAC(key, hashes.SHA256())  # keyed once, copied per pseudonym

    def __repr__(self) -> str:
        return "BuyerPseudonyms(key=<redacted>)"

    def of(self, tenant_id: str, kind: str, digest: bytes) -> str:
        """The pseudonym of the buyer whose ``kind`` (email, phone) has blind-index
        ``digest`` in ``tenant_id``."""
        keyed = self._keyed.copy()
        keyed.update(tenant_id.encode() + b"\x00" + kind.encode() + b"\x00" + digest)
        return PREFIX + keyed.finalize()[:16].hex()
