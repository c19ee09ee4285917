"""Row identifiers: time-ordered, so index inserts append, and unguessable.

An id is an RFC 9562 UUIDv7 written as 32 lower-case hex digits (the width of the former
purely random ids, so every ``String(32)`` column keeps it): the Unix time in milliseconds
(48 bits), then 74 bits from the operating system's CSPRNG; the version and variant take
the other 6 bits.

Why time-ordered: the primary-key B-tree of a table keyed by random ids receives every insert
at a random leaf, so a batch of N rows dirties up to N pages of it and SQLite (WAL) writes each
dirtied page at every commit; ingest then slows down as tables grow. With a time prefix a batch
lands on the right edge of the index, whatever the table's size.

Why not a library: ``uuid_utils.uuid7`` (and Python 3.14's ``uuid.uuid7``) fill the low bits
with a per-millisecond counter, leaving 32 random bits per id, which makes the ids of one batch
guessable from each other; ``uuid6.uuid7`` keeps 76 random bits but bumps its timestamp by 1 ms
for every id made within the same millisecond (the embedded time runs ahead of the clock under
bulk ingest) and costs several microseconds per id. Ids made in the same millisecond are not
ordered among themselves here (no counter), which does not matter for index locality: they all
land on the same edge of the tree.
"""

from __future__ import annotations

import os
from datetime import datetime

_RANDOM_BYTES = 10  # 80 bits, 6 of which are then overwritten by the version and variant
_CLEAR = ~((0xF << 76) | (0x3 << 62))
_VERSION_7_VARIANT_RFC = (0x7 << 76) | (0x2 << 62)


def new_ids(count: int, at: datetime) -> list[str]:
    """``count`` fresh ids for rows created at ``at`` (the runtime clock's now): one CSPRNG
    call."""
    prefix = (int(at.timestamp() * 1000)) << 80
    random = os.urandom(_RANDOM_BYTES * count)
    fixed = prefix | _VERSION_7_VARIANT_RFC
    return [f"{fixed | (int.from_bytes(random[i:i + _RANDOM_BYTES]) & _CLEAR):032x}"
            for i in range(0, _RANDOM_BYTES * count, _RANDOM_BYTES)]


def new_id(at: datetime) -> str:
    """One fresh id."""
    return new_ids(1, at)[0]
