"""The deletion register: one row per deletion or return request, its state machine, and the
signed certificate of sanitization each completed request earns. Rows hold ids, counts,
times and digests: never a buyer's email (a buyer scope is held as the tenant's blind-index
digest of it, which names nobody once the tenant's keys are gone)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sellervault.store.base import Base
from sellervault.store.types import UTCDateTime


class DeletionRequest(Base):
    """A request to delete (and, with ``return_data``, first return) an order, a buyer's
    orders or a whole tenant. ``status``: ``pending`` until executed, ``executing`` while
    its steps run (``step`` is the last one finished: ``deletion.execution``), then
    ``completed`` with a certificate, or ``cancelled`` before execution began."""

    __tablename__ = "deletion_requests"
    __table_args__ = (Index("ix_deletion_requests_open", "status", "deadline"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[str] = mapped_column(String(64))
    amazon_order_id: Mapped[str | None] = mapped_column(String(64))
    buyer_digest: Mapped[str | None] = mapped_column(String(64))
    """The tenant's blind-index digest of the buyer's email (hex), for a buyer scope."""
    buyer: Mapped[str | None] = mapped_column(String(40))
    """The buyer's pseudonym (``crypto.pseudonyms``), for the request's events."""
    requested_by: Mapped[str] = mapped_column(String(200))
    """Who asked (the marketplace, a ticket): as recorded by the security officer."""
    return_data: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    step: Mapped[str | None] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    executed_by: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_by: Mapped[str | None] = mapped_column(String(32))
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    orders: Mapped[int | None] = mapped_column(Integer)
    """How many orders the scope held when its keys were destroyed (canaries included): an
    order or buyer scope's, recorded with the destruction; a tenant's, counted as step 2
    begins (the same number: an erased tenant takes no ingest), so that the destruction of a
    large tenant's keys is not kept waiting by a count of its rows."""
    data_keys: Mapped[int | None] = mapped_column(Integer)
    data_key_ids: Mapped[str | None] = mapped_column(Text)
    """The destroyed data keys' ids (JSON), of an order or buyer scope: what verification
    checks are gone (a tenant scope checks that the tenant has no key left)."""
    tenant_keys: Mapped[int | None] = mapped_column(Integer)
    rows_deleted: Mapped[int | None] = mapped_column(Integer)
    """How many of the scope's orders were deleted so far (the progress of step 2)."""
    return_sha256: Mapped[str | None] = mapped_column(String(64))
    """The SHA-256 of the returned file (``deletion.returns``), once written."""
    return_key: Mapped[str | None] = mapped_column(Text)
    """The recipient's public key (a JWK, public members only) the data is returned to."""
    return_key_id: Mapped[str | None] = mapped_column(String(64))
    """Its RFC 7638 thumbprint, as the certificate names it."""
    returned: Mapped[int | None] = mapped_column(Integer)
    """How many orders were returned."""
    return_approved_by: Mapped[str | None] = mapped_column(String(32))
    """The second security officer who approved the return and its recipient key (never
    the one who filed it): the data leaves the vault only on two people's word."""
    return_approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verification: Mapped[str | None] = mapped_column(Text)
    """What the verification step checked and found, and the database's cleanup (JSON)."""
    warned: Mapped[int] = mapped_column(Integer, default=0)
    """How many of the deadline's warnings (24, 8, 1 hours left, overdue) were raised."""


class CertificateRow(Base):
    """A certificate of sanitization (NIST SP 800-88 Rev. 1, appendix G): the signed document
    exactly as signed, and its Ed25519 signature. One per completed request."""

    __tablename__ = "certificates"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(32), ForeignKey("deletion_requests.id"),
                                            unique=True)
    document: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(128))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReturnedPart(Base):
    """One line of a returned file: up to a batch of the scope's orders as a JWE encrypted
    to the recipient's key (``deletion.returns``), which the vault cannot open."""

    __tablename__ = "returned_parts"

    request_id: Mapped[str] = mapped_column(String(32), ForeignKey("deletion_requests.id"),
                                            primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    orders: Mapped[int] = mapped_column(Integer)
    last_order_id: Mapped[str | None] = mapped_column(String(32))
    """The last order in it (the parts go in order-id order): where the next one starts."""
    jwe: Mapped[str] = mapped_column(Text)


class LegalHold(Base):
    """A legal hold on one order: retention leaves it alone until ``held_until`` (the order's
    ``held_until`` says so to the retention run; this row says why and who). Released early
    by ``released_*``; one row per hold placed, kept as the record."""

    __tablename__ = "legal_holds"
    __table_args__ = (Index("ix_legal_holds_order", "tenant_id", "amazon_order_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    amazon_order_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(500))
    held_by: Mapped[str] = mapped_column(String(32))
    held_until: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    released_by: Mapped[str | None] = mapped_column(String(32))
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ErasureApplied(Base):
    """An erasure ledger entry this database has (``deletion.ledger``), by its id: written in
    the erasure's own transaction, so the table says exactly which erasures committed."""

    __tablename__ = "erasures_applied"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
