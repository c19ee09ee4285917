"""Account tables. Secrets are stored only as Argon2id hashes, keyed hashes or ciphertexts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from sellervault.store.base import Base
from sellervault.store.types import UTCDateTime


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    # A person's mailbox up to lookalikes and +tags (accounts.identity); NULL for a service.
    # The unique index, not the check before the insert, is what keeps one account per
    # mailbox when two creations race.
    mailbox_key: Mapped[str | None] = mapped_column(String(320), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")
    disabled_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    """The rule that disabled the account (``audit.events.Reason``); NULL when a person
    disabled it, or while it is not disabled."""
    password_hash: Mapped[str | None] = mapped_column(String(256))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    totp_secret_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    """Failed sign-ins since the last success, forgotten 12 hours after the last failure:
    what the temporary lock counts (``accounts.lockout``)."""
    failures_since_success: Mapped[int] = mapped_column(Integer, server_default="0")
    """Failed sign-ins since the last success, never forgotten with time: ten disable the
    account (``accounts.lockout``)."""
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When the account's access stops (``accounts.lifecycle``); NULL: no end date."""
    allowed_networks: Mapped[str | None] = mapped_column(String(2000))
    """Comma-separated CIDRs the account may be used from, within the deployment's
    allowlist (``accounts.networks``); NULL: the deployment's allowlist alone."""


class GrantRow(Base):
    __tablename__ = "grants"

    account_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    granted_by: Mapped[str | None] = mapped_column(String(32))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKey(Base):
    __tablename__ = "api_keys"

    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16), unique=True)
    account_id: Mapped[str] = mapped_column(String(32), ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expiry_warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When the ``api-key-expiry`` job warned that the key expires soon (once per key)."""


class SessionRow(Base):
    __tablename__ = "sessions"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32), ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EnrolmentRow(Base):
    """A single-use enrolment token (its keyed hash): the person it names sets their own
    password and authenticator with it (``accounts.enrolment``)."""

    __tablename__ = "enrolments"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32), ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RecoveryCodeRow(Base):
    """A single-use recovery code (its keyed hash), usable in place of a TOTP code."""

    __tablename__ = "recovery_codes"

    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32), ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PasswordHistoryRow(Base):
    """A password an account had before its current one (its Argon2id hash): a new password
    may not be any of the last ten (``accounts.password_history``)."""

    __tablename__ = "password_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(32), ForeignKey("accounts.id"), index=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    replaced_at: Mapped[datetime] = mapped_column(UTCDateTime)
