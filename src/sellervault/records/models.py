"""Order storage: clear confidential attributes, encrypted PII records, blind indexes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from sellervault.store.base import Base
from sellervault.store.types import UTCDateTime


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("tenant_id", "amazon_order_id"),
        # A blind index is an HMAC under the tenant's own index key, so a digest already
        # singles out one tenant's rows: indexing the digest alone finds the same rows as
        # (tenant_id, digest) did (searches still filter on tenant_id), with smaller entries.
        # These three indexes receive every insert at a random place, so their size is what
        # each ingest commit rewrites (migration 0002).
        Index("ix_orders_email_bidx", "email_bidx"),
        Index("ix_orders_phone_bidx", "phone_bidx"),
        Index("ix_orders_postal_bidx", "postal_bidx"),
        # What the retention run looks for (records.lifetimes, deletion.retention).
        Index("ix_orders_pii_expires_at", "pii_expires_at"),
        Index("ix_orders_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    amazon_order_id: Mapped[str] = mapped_column(String(64))
    data_key_id: Mapped[str] = mapped_column(String(32))
    purchase_date: Mapped[datetime] = mapped_column(UTCDateTime)
    last_update_date: Mapped[datetime] = mapped_column(UTCDateTime)
    order_status: Mapped[str] = mapped_column(String(64))
    marketplace_id: Mapped[str | None] = mapped_column(String(64))
    attributes: Mapped[str] = mapped_column(Text)
    buyer_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    address_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    email_bidx: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    phone_bidx: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    postal_bidx: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    is_canary: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    pii_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When its buyer PII goes (``records.lifetimes``); None: no delivery or ship date yet."""
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """When the order goes (18 months after its purchase)."""
    pii_removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When retention erased its PII (its data key destroyed; the order data kept)."""
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """A legal hold (``deletion.holds``): retention leaves the order alone until then."""


class Restriction(Base):
    """A buyer whose processing is restricted (a data subject's right, GDPR art. 18): every
    read, reveal and search hit of their orders in the tenant is refused until it is lifted
    (``records.restrictions``). The buyer is held as the tenant's blind-index digest of their
    email (what their orders' ``email_bidx`` holds), never the email. At most one active
    restriction per buyer (the partial unique index), so reads join it without duplicates."""

    __tablename__ = "restrictions"
    __table_args__ = (
        Index("uq_restrictions_active", "tenant_id", "buyer_digest", unique=True,
              sqlite_where=text("lifted_at IS NULL"),
              postgresql_where=text("lifted_at IS NULL")),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    buyer_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    buyer: Mapped[str] = mapped_column(String(40))
    """The buyer's pseudonym (``crypto.pseudonyms``), as the security log names them."""
    reason: Mapped[str] = mapped_column(String(500))
    restricted_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lifted_by: Mapped[str | None] = mapped_column(String(32))
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ErasedOrder(Base):
    """An order deleted at a data subject's or the seller's request (a deletion request of
    scope order or buyer): a marketplace re-sync sending it again must not bring it back,
    so ingest withholds it (``records.tombstones``). It is held as the tenant's blind-index
    digest of the marketplace order id, never the id: the tombstone says that an order was
    deleted, not which one, to whoever lacks the tenant's index key. It lasts as long as the
    order would have (``expires_at``, its 18 months): an order re-sent after that would be
    removed by retention at once. (A tenant erased whole keeps none.)"""

    __tablename__ = "erased_orders"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
