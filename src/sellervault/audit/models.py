"""Security log tables: the append-only event chain and its head."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sellervault.store.base import Base


class EventRow(Base):
    """One event. Read by ``seq`` only (verification, the audit API), so no secondary index:
    each would cost every request a B-tree update (migration 0003)."""

    __tablename__ = "security_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    purpose: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[int | None] = mapped_column(Integer)
    count: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(64))
    criteria: Mapped[str | None] = mapped_column(String(64))
    """Which kinds of criteria a search used (``buyer-email+postal-code``), never values."""
    buyer: Mapped[str | None] = mapped_column(String(40))
    """The keyed pseudonym of the buyer the event is about (``crypto.pseudonyms``)."""
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ChainHead(Base):
    """The last event's sequence number and hash: one row, locked by every writer."""

    __tablename__ = "security_event_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class CheckpointRow(Base):
    """A signed checkpoint of the log (``audit.checkpoints``): the Merkle root of its first
    ``tree_size`` events, signed with the checkpoint key, chained to the one before."""

    __tablename__ = "audit_checkpoints"

    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    tree_size: Mapped[int] = mapped_column(BigInteger)
    statement: Mapped[str] = mapped_column(Text)
    """The signed bytes (canonical JSON: number, size, root, time, previous, key)."""
    signature: Mapped[str] = mapped_column(String(128))
    """Ed25519 over ``statement``, hex."""
    frontier: Mapped[str] = mapped_column(Text)
    """The tree's compact range (JSON list of hex): where the next checkpoint extends it
    from. Not signed: a wrong one gives a root that does not verify."""


class ReviewRow(Base):
    """One review of the security log: who read it, up to which event, when. ``number`` is
    one more than the review before it, and unique: of two reviews recorded at the same
    moment, one is refused (``audit.reviews``)."""

    __tablename__ = "audit_reviews"

    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    reviewer_id: Mapped[str] = mapped_column(String(32))
    up_to_seq: Mapped[int] = mapped_column(BigInteger)
    reviewed_at: Mapped[str] = mapped_column(String(32))


class RemovalRow(Base):
    """A signed statement of events the retention job removed (``audit.retention``): the log
    now begins after ``removed_through``, and verification starts from what it records."""

    __tablename__ = "audit_removals"

    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    removed_through: Mapped[int] = mapped_column(BigInteger)
    statement: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(128))
