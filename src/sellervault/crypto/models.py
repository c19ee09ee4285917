"""Tables of the key hierarchy: wrapped keys only; no key is ever stored in clear.

Read and written through ``crypto/keystore.py`` only. No column has a time default: the key
store is given the time, read from the runtime's clock, like every time SellerVault keeps."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from sellervault.store.base import Base
from sellervault.store.types import UTCDateTime


class TenantKey(Base):
    """A tenant's key-encryption key (purpose "kek") or blind-index key (purpose "index").

    Status ``active`` (wraps new keys), ``retired`` (a rotation replaced it; ``wrapped`` is
    NULL once no data key is wrapped under it) or ``destroyed`` (with all of the tenant's
    keys; ``wrapped`` NULL). The row outlives the key so that its version is never made
    again."""

    __tablename__ = "tenant_keys"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    root_version: Mapped[int] = mapped_column(Integer)
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SystemKey(Base):
    """A service-wide secret (security-log key, API-key pepper, account secrets key)."""

    __tablename__ = "system_keys"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    root_version: Mapped[int] = mapped_column(Integer)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DataKey(Base):
    """One data key per order, wrapped by its tenant's key; destroying it (deleting the row)
    erases the order. ``destroyed_at`` is never set: the row goes, and the erasure's record
    is its security event."""

    __tablename__ = "data_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    kek_version: Mapped[int] = mapped_column(Integer)
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
