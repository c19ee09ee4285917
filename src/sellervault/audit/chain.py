"""The hash chain: each event's MAC covers its fields and the previous event's MAC.

The MAC is HMAC-SHA256 under the dedicated security-log key (wrapped by the root key), so
someone who can write the database but not read the key cannot forge a consistent chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

GENESIS = "0" * 64
HASHED_FIELDS = (
    "seq", "occurred_at", "channel", "action", "outcome", "actor_id", "tenant_id",
    "target_type", "target_id", "source_ip", "request_id", "purpose", "status", "count",
    "reason",
)
LATER_FIELDS = ("criteria", "buyer")
"""Fields added after the first release. Each is in the MAC'd body only when it is set (not
null), so the events written before it existed keep their MACs; setting, clearing or
changing it on any event changes that event's body, so it cannot be edited unnoticed."""
CHAINED_FIELDS = HASHED_FIELDS + LATER_FIELDS
"""Every column the MAC covers."""


# The MAC'd body is the JSON object of HASHED_FIELDS with sorted keys and no spaces. The dict
# is built in sorted order and encoded by one encoder made once (json.dumps would make a new
# one per call): the same bytes as json.dumps(..., sort_keys=True, separators=(",", ":")).
_BODY_ORDER = tuple(sorted(HASHED_FIELDS))
_BODY_JSON = json.JSONEncoder(separators=(",", ":"))


def event_body(fields: Mapping[Any, Any]) -> bytes:
    """An event's canonical bytes: what its MAC covers, and its Merkle leaf (``merkle``)."""
    values = {name: fields.get(name) for name in _BODY_ORDER}
    later = {name: fields[name] for name in LATER_FIELDS if fields.get(name) is not None}
    if later:
        values = dict(sorted({**values, **later}.items()))
    return _BODY_JSON.encode(values).encode()


def stored_body(row: Any) -> bytes:
    """The canonical body of an event as stored (a row with the ``CHAINED_FIELDS`` columns)."""
    return event_body({name: getattr(row, name) for name in CHAINED_FIELDS})


def stored_mac_holds(log_key: bytes, row: Any) -> bool:
    """Whether a stored event's MAC is the one of its own body and its own link (the link
    itself is the caller's to check against the event before)."""
    return macs_equal(body_mac(log_key, row.prev_hash, stored_body(row)), row.hash)


def event_mac(log_key: bytes, prev_hash: str, fields: dict[str, Any]) -> str:
    return body_mac(log_key, prev_hash, event_body(fields))


def body_mac(log_key: bytes, prev_hash: str, body: bytes) -> str:
    """The MAC of an event whose canonical body (``event_body``) is ``body``."""
    return hmac.digest(log_key, prev_hash.encode() + b"\n" + body, hashlib.sha256).hex()


def macs_equal(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode(), right.encode())
