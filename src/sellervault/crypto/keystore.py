"""Where wrapped keys are kept, apart from the recipes that make, wrap and open them.

The ``Keyring`` (``crypto/keyring.py``) knows the hierarchy: which key wraps which, the
associated data that binds a wrapped key to its place, what is cached. A ``KeyStore`` only
keeps wrapped bytes and their labels (tenant, purpose, version, root version, status), and
never sees a key in clear. Keeping the two apart gives key material one door: every read,
write and destruction of a wrapped key goes through the store, which is what a certificate
of sanitization will have to speak for, and what another kind of storage (a KMS's key
store, a separate database) would replace.

Every method works inside the caller's transaction (``db`` or ``session``): a data key and
the order it protects are written together, and a rotation or a destruction is one commit.

``SqlKeyStore`` keeps them in the tables of ``crypto/models.py``. One read stays outside the
protocol on purpose: ``join_data_key`` adds an order's wrapped data key to the query that
finds the order, so a reveal reads record and key in one statement (the hot path, see
``records/service.py``). It only makes sense where keys and records share a database; a key
store elsewhere would answer ``data_keys`` instead, at one more round trip per reveal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from sellervault.crypto.errors import TenantKeysBusyError
from sellervault.crypto.models import DataKey, SystemKey, TenantKey
from sellervault.store.bulk import BulkInsert
from sellervault.store.driver import Db
from sellervault.store.prepared import Prepared
from sellervault.store.upsert import insert_into

ACTIVE = "active"
RETIRED = "retired"  # no longer wraps new keys; its wrapped key is NULL once nothing uses it
DESTROYED = "destroyed"  # destroyed with all of its tenant's keys: the tenant is erased
KEK = "kek"  # a tenant key's purpose: it wraps the tenant's data keys


@dataclass(frozen=True, slots=True)
class StoredTenantKey:
    """A tenant key as kept: wrapped by the root key, or None once destroyed."""

    tenant_id: str
    purpose: str
    version: int
    root_version: int
    wrapped: bytes | None
    status: str


@dataclass(frozen=True, slots=True)
class StoredDataKey:
    """A data key as kept: wrapped by its tenant's key of ``kek_version``."""

    id: str
    kek_version: int
    wrapped: bytes | None


@dataclass(frozen=True, slots=True)
class StoredSystemKey:
    """A service-wide secret as kept: wrapped by the root key."""

    name: str
    root_version: int
    wrapped: bytes


class KeyStore(Protocol):
    """Reading and writing wrapped keys; nothing here wraps, unwraps or caches."""

    # -- tenant keys -------------------------------------------------------------------------

    def hold_tenant(self, session: Session, tenant_id: str, *, exclusive: bool) -> None:
        """Hold the tenant's keys until the transaction ends: shared by transactions that
        wrap new data keys under the active version, exclusive for one that changes which
        keys exist (a rotation, a destruction)."""
        ...

    def tenant_keys(self, session: Session, tenant_id: str) -> list[StoredTenantKey]:
        """Every key of the tenant, each version, destroyed ones included."""
        ...

    def add_tenant_key(self, session: Session, key: StoredTenantKey,
                       created_at: datetime) -> bool:
        """Keep a new tenant key; nothing happens if that version exists already (two
        first ingests of a new tenant both add version 1). Whether this one added it."""
        ...

    def active_version(self, session: Session, tenant_id: str, purpose: str) -> int | None:
        ...

    def tenant_key(self, db: Db, tenant_id: str, purpose: str,
                   version: int) -> StoredTenantKey | None:
        ...

    def tenant_keys_under_root(self, session: Session) -> list[StoredTenantKey]:
        """Every tenant key that still has a wrapped key (what a root rotation re-wraps)."""
        ...

    def rewrap_tenant_keys(self, session: Session, keys: Sequence[StoredTenantKey]) -> None:
        """Replace the root version and wrapped bytes of existing, undestroyed keys; never
        brings a destroyed one back."""
        ...

    def retire_tenant_keys(self, session: Session, tenant_id: str, purpose: str,
                           below_version: int, at: datetime) -> None:
        """Retire the versions below ``below_version`` and destroy the wrapped key of each
        that no data key is wrapped under any more (one that is keeps it, so it still opens
        after a restart)."""
        ...

    def destroy_tenant_keys(self, session: Session, tenant_id: str, at: datetime) -> int:
        """Destroy the tenant's tenant keys (every purpose and version) and mark each
        destroyed, the row staying; the number of wrapped keys that were still there. Its
        data keys are ``destroy_data_keys``'s."""
        ...

    # -- data keys ---------------------------------------------------------------------------

    def add_data_keys(self, session: Session, tenant_id: str, kek_version: int,
                      created_at: datetime, keys: Iterable[tuple[str, bytes]]) -> None:
        """Keep new data keys (id, wrapped), all wrapped under the tenant's ``kek_version``;
        ``keys`` may be a generator, consumed as they are stored."""
        ...

    def data_keys(self, session: Session, tenant_id: str,
                  data_key_ids: Sequence[str]) -> list[StoredDataKey]:
        """The tenant's data keys among ``data_key_ids`` (another tenant's never)."""
        ...

    def live_data_keys(self, session: Session, tenant_id: str) -> list[StoredDataKey]:
        """Every data key of the tenant that can still be opened (what a rotation re-wraps)."""
        ...

    def rewrap_data_keys(self, session: Session, tenant_id: str,
                         keys: Sequence[StoredDataKey]) -> None:
        """Replace the tenant-key version and wrapped bytes of existing data keys; a key
        destroyed meanwhile stays destroyed."""
        ...

    def destroy_data_keys(self, session: Session, tenant_id: str,
                          data_key_ids: Sequence[str] | None) -> int:
        """Destroy the tenant's data keys among ``data_key_ids`` (None: all of them); the
        number destroyed (a key destroyed before, or another tenant's, is not counted)."""
        ...

    def count_data_keys(self, session: Session, tenant_id: str,
                        data_key_ids: Sequence[str] | None) -> int:
        """How many of the tenant's data keys among ``data_key_ids`` (None: all) exist."""
        ...

    # -- system keys -------------------------------------------------------------------------

    def system_key(self, db: Db, name: str) -> StoredSystemKey | None:
        ...

    def add_system_key(self, db: Db, key: StoredSystemKey, created_at: datetime) -> None:
        ...

    def system_keys(self, session: Session) -> list[StoredSystemKey]:
        ...

    def rewrap_system_keys(self, session: Session, keys: Sequence[StoredSystemKey]) -> None:
        ...


TENANT_KEYS = cast(Table, TenantKey.__table__)
DATA_KEYS = cast(Table, DataKey.__table__)
SYSTEM_KEYS = cast(Table, SystemKey.__table__)

TENANT_LOCK_WAIT_MS = 5000
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout

# Statements built once: no per-call expression building or cache-key generation.
_TENANT_KEY_COLUMNS = (TENANT_KEYS.c.tenant_id, TENANT_KEYS.c.purpose, TENANT_KEYS.c.version,
                       TENANT_KEYS.c.root_version, TENANT_KEYS.c.wrapped, TENANT_KEYS.c.status)
_TENANT_KEYS_OF = select(*_TENANT_KEY_COLUMNS).where(
    TENANT_KEYS.c.tenant_id == bindparam("tenant_id"))
_TENANT_KEY = Prepared(select(*_TENANT_KEY_COLUMNS).where(
    TENANT_KEYS.c.tenant_id == bindparam("tenant_id"),
    TENANT_KEYS.c.purpose == bindparam("purpose"),
    TENANT_KEYS.c.version == bindparam("version")))
_ACTIVE_VERSION = select(TENANT_KEYS.c.version).where(
    TENANT_KEYS.c.tenant_id == bindparam("tenant_id"),
    TENANT_KEYS.c.purpose == bindparam("purpose"), TENANT_KEYS.c.status == ACTIVE)
_WRAPPED_TENANT_KEYS = select(*_TENANT_KEY_COLUMNS).where(TENANT_KEYS.c.wrapped.is_not(None))
_REWRAP_TENANT_KEY = update(TENANT_KEYS).where(
    TENANT_KEYS.c.tenant_id == bindparam("b_tenant_id"),
    TENANT_KEYS.c.purpose == bindparam("b_purpose"),
    TENANT_KEYS.c.version == bindparam("b_version"),
    TENANT_KEYS.c.wrapped.is_not(None),
).values(root_version=bindparam("b_root_version"), wrapped=bindparam("b_wrapped"))

_INSERT_DATA_KEYS = BulkInsert(DATA_KEYS,
                               ("id", "tenant_id", "kek_version", "wrapped", "created_at"))
_DATA_KEYS_BY_ID = select(DATA_KEYS.c.id, DATA_KEYS.c.kek_version, DATA_KEYS.c.wrapped).where(
    DATA_KEYS.c.tenant_id == bindparam("tenant_id"),
    DATA_KEYS.c.id.in_(bindparam("ids", expanding=True)))
_LIVE_DATA_KEYS = select(DATA_KEYS.c.id, DATA_KEYS.c.kek_version, DATA_KEYS.c.wrapped).where(
    DATA_KEYS.c.tenant_id == bindparam("tenant_id"), DATA_KEYS.c.wrapped.is_not(None))
_REWRAP_DATA_KEY = update(DATA_KEYS).where(
    DATA_KEYS.c.tenant_id == bindparam("b_tenant_id"), DATA_KEYS.c.id == bindparam("b_id"),
    DATA_KEYS.c.wrapped.is_not(None),
).values(kek_version=bindparam("b_kek_version"), wrapped=bindparam("b_wrapped"))

_SYSTEM_KEY = Prepared(select(SYSTEM_KEYS.c.name, SYSTEM_KEYS.c.root_version,
                              SYSTEM_KEYS.c.wrapped).where(
    SYSTEM_KEYS.c.name == bindparam("name")))
_ADD_SYSTEM_KEY = Prepared(insert(SYSTEM_KEYS).values(
    {name: bindparam(name) for name in ("name", "root_version", "wrapped", "created_at")}))
_REWRAP_SYSTEM_KEY = update(SYSTEM_KEYS).where(
    SYSTEM_KEYS.c.name == bindparam("b_name"),
).values(root_version=bindparam("b_root_version"), wrapped=bindparam("b_wrapped"))


def join_data_key(query: Select[Any], tenant_id: ColumnElement[str],
                  data_key_id: ColumnElement[str]) -> Select[Any]:
    """``query`` with the wrapped data key ``data_key_id`` of ``tenant_id`` alongside, as the
    columns ``data_key_kek_version`` and ``data_key_wrapped`` (NULL when there is none: never
    made, or destroyed, or the tenant key that wraps it destroyed), for
    ``Keyring.open_data_key``: a record and its key in one statement. The documented
    exception to reading keys through the ``KeyStore``.

    Why the tenant key is asked too: a tenant's erasure destroys its tenant keys in one
    commit and deletes its data keys' rows afterwards, a batch at a time. Every process that
    used the tenant holds its key-encryption key unwrapped, and would go on opening the data
    keys still stored, in another process than the one erasing, until their rows went. With
    the key's state read in the same statement, nothing of the tenant opens anywhere from
    that commit on."""
    live_kek = select(TENANT_KEYS.c.version).where(
        TENANT_KEYS.c.tenant_id == tenant_id, TENANT_KEYS.c.purpose == KEK,
        TENANT_KEYS.c.version == DATA_KEYS.c.kek_version,
        TENANT_KEYS.c.wrapped.is_not(None)).correlate_except(TENANT_KEYS).exists()
    return query.add_columns(
        DATA_KEYS.c.kek_version.label("data_key_kek_version"),
        case((live_kek, DATA_KEYS.c.wrapped)).label("data_key_wrapped"),
    ).outerjoin(DATA_KEYS, and_(DATA_KEYS.c.id == data_key_id,
                                DATA_KEYS.c.tenant_id == tenant_id))


def tenant_lock_id(tenant_id: str) -> int:
    """The advisory lock id of a tenant's keys: 64 bits of a domain-separated SHA-256 (two
    tenants sharing one would only wait for each other, never lose anything)."""
    digest = hashlib.sha256(b"sellervault/tenant-keys/" + tenant_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SqlKeyStore:
    """Wrapped keys in the ``tenant_keys``, ``data_keys`` and ``system_keys`` tables.

    What destroying leaves behind. A destroyed data key's row is deleted; a destroyed tenant
    key keeps its row (labels and status, ``wrapped`` NULL) so that its version is never
    made again: every process caches unwrapped tenant keys by (tenant, purpose, version),
    and a version that came back with a different key would have another process, still
    holding the old one, wrap new data keys under a key no longer stored. The database may
    still hold the old bytes for a while: PostgreSQL keeps a deleted or updated row's old
    version in its table until VACUUM reuses the space, and both databases keep it in their
    write-ahead logs (SQLite's ``-wal`` file until a checkpoint overwrites it; PostgreSQL's
    WAL segments, archives and replicas), besides any backup. SQLite's ``secure_delete``
    zeroes the freed space in the database file itself. Those copies are wrapped: a data key
    under its tenant key, a tenant key under the root key, which is outside the database,
    so nobody holding the database alone can open them. Someone who also holds the root key
    could open an old copy of a tenant key, and with it an old copy of a data key destroyed
    since. Rotating the tenant key destroys the tenant-key version the data-key copies need;
    rotating the root key (which removes the old root version from the key file) destroys
    the root version the tenant-key copies need.
    """

    # -- tenant keys -------------------------------------------------------------------------

    def hold_tenant(self, session: Session, tenant_id: str, *, exclusive: bool) -> None:
        """A transaction-scoped PostgreSQL advisory lock. Under READ COMMITTED an ingest
        would otherwise read the active version while a rotation is re-wrapping, wrap its
        data keys under the version the rotation then destroys, and lose their PII at the
        next restart; or add data keys to a tenant whose keys a destruction is deleting.
        SQLite needs none: its write transactions begin IMMEDIATE, one at a time."""
        if session.get_bind().dialect.name != "postgresql":
            return
        if exclusive:
            session.execute(select(func.pg_advisory_xact_lock(tenant_lock_id(tenant_id))))
            return
        # A shared holder waits for an exclusive one at most TENANT_LOCK_WAIT_MS: a long
        # rotation must not hold every worker thread (and so every other route) while it runs.
        session.execute(text(f"SET LOCAL lock_timeout = {int(TENANT_LOCK_WAIT_MS)}"))
        try:
            session.execute(select(func.pg_advisory_xact_lock_shared(
                tenant_lock_id(tenant_id))))
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                raise TenantKeysBusyError() from None
            raise
        session.execute(text("SET LOCAL lock_timeout = DEFAULT"))

    def tenant_keys(self, session: Session, tenant_id: str) -> list[StoredTenantKey]:
        rows = session.execute(_TENANT_KEYS_OF, {"tenant_id": tenant_id})
        return [StoredTenantKey(*row) for row in rows]

    def add_tenant_key(self, session: Session, key: StoredTenantKey,
                       created_at: datetime) -> bool:
        added = session.execute(insert_into(session, TENANT_KEYS).values(
            tenant_id=key.tenant_id, purpose=key.purpose, version=key.version,
            root_version=key.root_version, wrapped=key.wrapped, status=key.status,
            created_at=created_at,
        ).on_conflict_do_nothing().returning(TENANT_KEYS.c.version)).first()
        return added is not None

    def active_version(self, session: Session, tenant_id: str, purpose: str) -> int | None:
        return session.scalar(_ACTIVE_VERSION, {"tenant_id": tenant_id, "purpose": purpose})

    def tenant_key(self, db: Db, tenant_id: str, purpose: str,
                   version: int) -> StoredTenantKey | None:
        row = _TENANT_KEY.first(db, {"tenant_id": tenant_id, "purpose": purpose,
                                     "version": version})
        return None if row is None else StoredTenantKey(*row)

    def tenant_keys_under_root(self, session: Session) -> list[StoredTenantKey]:
        return [StoredTenantKey(*row) for row in session.execute(_WRAPPED_TENANT_KEYS)]

    def rewrap_tenant_keys(self, session: Session, keys: Sequence[StoredTenantKey]) -> None:
        if keys:
            session.connection().execute(_REWRAP_TENANT_KEY, [
                {"b_tenant_id": key.tenant_id, "b_purpose": key.purpose,
                 "b_version": key.version, "b_root_version": key.root_version,
                 "b_wrapped": key.wrapped} for key in keys])

    def retire_tenant_keys(self, session: Session, tenant_id: str, purpose: str,
                           below_version: int, at: datetime) -> None:
        older = and_(TENANT_KEYS.c.tenant_id == tenant_id, TENANT_KEYS.c.purpose == purpose,
                     TENANT_KEYS.c.version < below_version)
        session.execute(update(TENANT_KEYS).where(older).values(
            status=RETIRED, retired_at=func.coalesce(TENANT_KEYS.c.retired_at, at)))
        still_used = (select(DATA_KEYS.c.id).where(
            DATA_KEYS.c.tenant_id == tenant_id,
            DATA_KEYS.c.kek_version == TENANT_KEYS.c.version,
            DATA_KEYS.c.wrapped.is_not(None)).exists())
        session.execute(update(TENANT_KEYS).where(older, ~still_used).values(wrapped=None))

    def destroy_tenant_keys(self, session: Session, tenant_id: str, at: datetime) -> int:
        of_tenant = TENANT_KEYS.c.tenant_id == tenant_id
        destroyed = session.connection().execute(
            update(TENANT_KEYS).where(of_tenant, TENANT_KEYS.c.wrapped.is_not(None)).values(
                wrapped=None, status=DESTROYED,
                retired_at=func.coalesce(TENANT_KEYS.c.retired_at, at))).rowcount
        # Versions a rotation destroyed before: their wrapped key is gone already.
        session.execute(update(TENANT_KEYS).where(of_tenant, TENANT_KEYS.c.status != DESTROYED)
                        .values(status=DESTROYED))
        return destroyed

    # -- data keys ---------------------------------------------------------------------------

    def add_data_keys(self, session: Session, tenant_id: str, kek_version: int,
                      created_at: datetime, keys: Iterable[tuple[str, bytes]]) -> None:
        # One bulk insert (COPY on PostgreSQL), the rows made as they are stored: the same
        # rows as the ORM or Core would insert, without their per-row bookkeeping.
        _INSERT_DATA_KEYS.execute(session, (
            {"id": data_key_id, "tenant_id": tenant_id, "kek_version": kek_version,
             "wrapped": wrapped, "created_at": created_at} for data_key_id, wrapped in keys))

    def data_keys(self, session: Session, tenant_id: str,
                  data_key_ids: Sequence[str]) -> list[StoredDataKey]:
        rows = session.connection().execute(
            _DATA_KEYS_BY_ID, {"tenant_id": tenant_id, "ids": list(data_key_ids)})
        return [StoredDataKey(*row) for row in rows]

    def live_data_keys(self, session: Session, tenant_id: str) -> list[StoredDataKey]:
        rows = session.connection().execute(_LIVE_DATA_KEYS, {"tenant_id": tenant_id})
        return [StoredDataKey(*row) for row in rows]

    def rewrap_data_keys(self, session: Session, tenant_id: str,
                         keys: Sequence[StoredDataKey]) -> None:
        """An UPDATE by id: a key destroyed meanwhile matches no row, so it is not made
        again."""
        if keys:
            session.connection().execute(_REWRAP_DATA_KEY, [
                {"b_tenant_id": tenant_id, "b_id": key.id, "b_kek_version": key.kek_version,
                 "b_wrapped": key.wrapped} for key in keys])

    def destroy_data_keys(self, session: Session, tenant_id: str,
                          data_key_ids: Sequence[str] | None) -> int:
        statement = delete(DATA_KEYS).where(DATA_KEYS.c.tenant_id == tenant_id)
        if data_key_ids is not None:
            if not data_key_ids:
                return 0
            statement = statement.where(DATA_KEYS.c.id.in_(list(data_key_ids)))
        count: int = session.connection().execute(statement).rowcount
        return count

    def count_data_keys(self, session: Session, tenant_id: str,
                        data_key_ids: Sequence[str] | None) -> int:
        statement = select(func.count()).select_from(DATA_KEYS).where(
            DATA_KEYS.c.tenant_id == tenant_id)
        if data_key_ids is not None:
            if not data_key_ids:
                return 0
            statement = statement.where(DATA_KEYS.c.id.in_(list(data_key_ids)))
        count: int = session.connection().execute(statement).scalar_one()
        return count

    # -- system keys -------------------------------------------------------------------------

    def system_key(self, db: Db, name: str) -> StoredSystemKey | None:
        row = _SYSTEM_KEY.first(db, {"name": name})
        return None if row is None else StoredSystemKey(*row)

    def add_system_key(self, db: Db, key: StoredSystemKey, created_at: datetime) -> None:
        _ADD_SYSTEM_KEY.execute(db, {"name": key.name, "root_version": key.root_version,
                                     "wrapped": key.wrapped, "created_at": created_at})

    def system_keys(self, session: Session) -> list[StoredSystemKey]:
        rows = session.execute(select(SYSTEM_KEYS.c.name, SYSTEM_KEYS.c.root_version,
                                      SYSTEM_KEYS.c.wrapped))
        return [StoredSystemKey(*row) for row in rows]

    def rewrap_system_keys(self, session: Session, keys: Sequence[StoredSystemKey]) -> None:
        if keys:
            session.connection().execute(_REWRAP_SYSTEM_KEY, [
                {"b_name": key.name, "b_root_version": key.root_version,
                 "b_wrapped": key.wrapped} for key in keys])
