"""The key hierarchy: root key (provider) -> tenant key -> one data key per order.

Everything here works on wrapped keys in the database; unwrapped tenant keys are cached in
process memory by (tenant, version), which is safe because a version's key never changes.
Rotation re-wraps keys, never data.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from sellervault.crypto.aead import Cipher, bind, new_key
from sellervault.crypto.blind_index import BlindIndex
from sellervault.crypto.errors import CryptoError, TenantKeysBusyError
from sellervault.crypto.models import DataKey, SystemKey, TenantKey
from sellervault.crypto.provider import KeyProvider
from sellervault.store.bulk import BulkInsert
from sellervault.store.driver import Db
from sellervault.store.ids import new_ids
from sellervault.store.prepared import Prepared
from sellervault.store.types import utcnow
from sellervault.store.upsert import insert_into

KEK = "kek"
INDEX = "index"
DATA_KEYS = cast(Table, DataKey.__table__)
_INSERT_DATA_KEYS = BulkInsert(DATA_KEYS,
                               ("id", "tenant_id", "kek_version", "wrapped", "created_at"))

# Statements built once: no per-call expression building or cache-key generation.
_ACTIVE_VERSION = select(TenantKey.version).where(
    TenantKey.tenant_id == bindparam("tenant_id"), TenantKey.purpose == bindparam("purpose"),
    TenantKey.status == "active",
)
_DATA_KEYS_BY_ID = select(DataKey.id, DataKey.kek_version, DataKey.wrapped).where(
    DataKey.tenant_id == bindparam("tenant_id"), DataKey.id.in_(bindparam("ids", expanding=True))
)


def join_data_key(query: Select[Any], tenant_id: ColumnElement[str],
                  data_key_id: ColumnElement[str]) -> Select[Any]:
    """``query`` with the wrapped data key ``data_key_id`` of ``tenant_id`` alongside, as the
    columns ``data_key_kek_version`` and ``data_key_wrapped`` (NULL when there is none), for
    ``Keyring.open_data_key``: a record and its key in one statement."""
    return query.add_columns(
        DATA_KEYS.c.kek_version.label("data_key_kek_version"),
        DATA_KEYS.c.wrapped.label("data_key_wrapped"),
    ).outerjoin(DATA_KEYS, and_(DATA_KEYS.c.id == data_key_id,
                                DATA_KEYS.c.tenant_id == tenant_id))


_TENANT_KEY = Prepared(select(TenantKey.root_version, TenantKey.wrapped).where(
    TenantKey.tenant_id == bindparam("tenant_id"), TenantKey.purpose == bindparam("purpose"),
    TenantKey.version == bindparam("version")))
_SYSTEM_KEY = Prepared(select(SystemKey.root_version, SystemKey.wrapped).where(
    SystemKey.name == bindparam("name")))
_SYSTEM_KEYS = cast(Table, SystemKey.__table__)
_TENANT_KEYS = cast(Table, TenantKey.__table__)
_ADD_SYSTEM_KEY = Prepared(insert(_SYSTEM_KEYS).values(
    {name: bindparam(name) for name in ("name", "root_version", "wrapped", "created_at")}))


class UnknownTenantKeyError(CryptoError):
    """The tenant has no key of the asked purpose (never set up, or erased)."""


class DataKeyDestroyedError(CryptoError):
    """The data key was destroyed: the data it protected is cryptographically erased."""


@dataclass(frozen=True, slots=True)
class NewDataKey:
    id: str
    cipher: Cipher


def _tenant_key_context(tenant_id: str, purpose: str, version: int) -> bytes:
    return bind("tenant-key", tenant_id, purpose, version)


def _system_key_context(name: str) -> bytes:
    return bind("system-key", name)


def _data_key_context(tenant_id: str, data_key_id: str, kek_version: int) -> bytes:
    return bind("data-key", tenant_id, data_key_id, kek_version)


class Keyring:
    """Process-wide access to the key hierarchy, backed by a key provider and the database."""

    def __init__(self, provider: KeyProvider) -> None:
        self._provider = provider
        self._tenant_keys: dict[tuple[str, str, int], bytes] = {}
        self._keks: dict[tuple[str, int], Cipher] = {}
        self._system_keys: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Keyring(provider={self._provider.name!r})"

    @property
    def provider(self) -> KeyProvider:
        return self._provider

    # -- tenant keys -------------------------------------------------------------------------

    def ensure_tenant(self, session: Session, tenant_id: str) -> None:
        """Create the tenant's key-encryption and index keys if it has none yet, and hold its
        keys steady until the transaction ends (``_hold_tenant_keys``): the data keys this
        transaction wraps are under the tenant key that is active when it commits."""
        _hold_tenant_keys(session, tenant_id, exclusive=False)
        existing = session.scalars(
            select(TenantKey.purpose).where(TenantKey.tenant_id == tenant_id)
        ).all()
        for purpose in (KEK, INDEX):
            if purpose not in existing:
                self._add_tenant_key(session, tenant_id, purpose, version=1)

    def _add_tenant_key(self, session: Session, tenant_id: str, purpose: str,
                        version: int) -> None:
        """Store a new wrapped tenant key. Two first ingests of a new tenant may both get here:
        the second one's insert waits for the first's commit and then adds nothing, and it
        reads (unwraps) the stored key like every later use."""
        root_version, wrapped = self._provider.wrap(
            new_key(), _tenant_key_context(tenant_id, purpose, version)
        )
        session.execute(insert_into(session, _TENANT_KEYS).values(
            tenant_id=tenant_id, purpose=purpose, version=version, root_version=root_version,
            wrapped=wrapped, status="active", created_at=utcnow(),
        ).on_conflict_do_nothing())

    def _active_version(self, session: Session, tenant_id: str, purpose: str) -> int:
        version = session.scalar(_ACTIVE_VERSION, {"tenant_id": tenant_id, "purpose": purpose})
        if version is None:
            raise UnknownTenantKeyError(f"tenant has no active {purpose} key")
        return version

    def _tenant_key(self, db: Db, tenant_id: str, purpose: str, version: int) -> bytes:
        cache_key = (tenant_id, purpose, version)
        key = self._tenant_keys.get(cache_key)
        if key is not None:
            return key
        row = _TENANT_KEY.first(db, {"tenant_id": tenant_id, "purpose": purpose,
                                     "version": version})
        if row is None or row.wrapped is None:
            raise UnknownTenantKeyError(f"tenant has no {purpose} key version {version}")
        key = self._provider.unwrap(row.root_version, row.wrapped,
                                    _tenant_key_context(tenant_id, purpose, version))
        with self._lock:
            self._tenant_keys[cache_key] = key
        return key

    def blind_index(self, session: Session, tenant_id: str) -> BlindIndex:
        version = self._active_version(session, tenant_id, INDEX)
        return BlindIndex(self._tenant_key(session, tenant_id, INDEX, version))

    # -- data keys ---------------------------------------------------------------------------

    def new_data_keys(self, session: Session, tenant_id: str, count: int) -> list[NewDataKey]:
        """Create ``count`` data keys under the tenant's active key, in one bulk insert."""
        if count == 0:
            return []
        kek_version = self._active_version(session, tenant_id, KEK)
        kek = self._kek(session, tenant_id, kek_version)
        now = utcnow()
        keys: list[NewDataKey] = []

        def rows() -> Iterator[dict[str, object]]:
            for data_key_id in new_ids(count, now):  # time-ordered: the primary-key index appends
                key = new_key()
                wrapped = kek.seal(key, _data_key_context(tenant_id, data_key_id, kek_version))
                keys.append(NewDataKey(data_key_id, Cipher(key)))
                yield {"id": data_key_id, "tenant_id": tenant_id, "kek_version": kek_version,
                       "wrapped": wrapped, "created_at": now}

        # One bulk insert (COPY on PostgreSQL), the rows made as they are stored: the same rows
        # as the ORM or Core would insert, without their per-row bookkeeping.
        _INSERT_DATA_KEYS.execute(session, rows())
        if len(keys) != count:
            raise RuntimeError("data keys were not all stored")
        return keys

    def data_keys(self, session: Session, tenant_id: str,
                  data_key_ids: Sequence[str]) -> dict[str, Cipher]:
        """Unwrap existing data keys of one tenant; a key of another tenant is never returned."""
        if not data_key_ids:
            return {}
        rows = session.connection().execute(
            _DATA_KEYS_BY_ID, {"tenant_id": tenant_id, "ids": list(data_key_ids)}
        ).all()
        found = {data_key_id: self.open_data_key(session, tenant_id, data_key_id, kek_version,
                                                 wrapped)
                 for data_key_id, kek_version, wrapped in rows}
        if set(data_key_ids) - found.keys():
            raise DataKeyDestroyedError("data key missing")
        return found

    def open_data_key(self, db: Db | None, tenant_id: str, data_key_id: str,
                      kek_version: int | None, wrapped: bytes | None) -> Cipher:
        """Unwrap one data key read by the caller (see ``join_data_key``); the associated data
        binds it to its tenant, id and tenant-key version, so a key row moved between tenants
        or ids does not open. ``db`` may be None when ``has_kek`` said the tenant key is
        already unwrapped in this process (code in the event loop, which must not block)."""
        if wrapped is None or kek_version is None:  # destroyed, or no such key
            raise DataKeyDestroyedError("data key destroyed")
        kek = self._kek(db, tenant_id, kek_version)
        return Cipher(kek.open(wrapped, _data_key_context(tenant_id, data_key_id, kek_version)))

    def has_kek(self, tenant_id: str, version: int | None) -> bool:
        """Whether the tenant's key-encryption key of ``version`` is unwrapped in this
        process already (so opening its data keys needs no database)."""
        return (tenant_id, version) in self._keks

    def _kek(self, db: Db | None, tenant_id: str, version: int) -> Cipher:
        """The tenant's key-encryption key of ``version``, ready to use (built once)."""
        kek = self._keks.get((tenant_id, version))
        if kek is None:
            if db is None:
                raise RuntimeError("tenant key not unwrapped yet: pass a database")
            kek = Cipher(self._tenant_key(db, tenant_id, KEK, version))
            with self._lock:
                self._keks[(tenant_id, version)] = kek
        return kek

    # -- system keys -------------------------------------------------------------------------

    def cached_system_key(self, name: str) -> bytes | None:
        """The named system key if this process has already unwrapped it (no database)."""
        return self._system_keys.get(name)

    def find_system_key(self, db: Db, name: str) -> bytes | None:
        """The named system key if it exists; never creates one (for readers such as log
        verification, for whom a missing key is a finding, not a first use)."""
        key = self._system_keys.get(name)
        if key is not None:
            return key
        row = _SYSTEM_KEY.first(db, {"name": name})
        if row is None:
            return None
        return self._remember_system_key(
            name, self._provider.unwrap(row.root_version, row.wrapped, _system_key_context(name)))

    def _remember_system_key(self, name: str, key: bytes) -> bytes:
        with self._lock:
            self._system_keys[name] = key
        return key

    def system_key(self, db: Db, name: str) -> bytes:
        """A named service-wide secret, created on first use and wrapped by the root key."""
        key = self._system_keys.get(name)
        if key is not None:
            return key
        row = _SYSTEM_KEY.first(db, {"name": name})
        if row is None:
            key = new_key()
            root_version, wrapped = self._provider.wrap(key, _system_key_context(name))
            _ADD_SYSTEM_KEY.execute(db, {"name": name, "root_version": root_version,
                                         "wrapped": wrapped, "created_at": utcnow()})
        else:
            key = self._provider.unwrap(row.root_version, row.wrapped, _system_key_context(name))
        return self._remember_system_key(name, key)

    # -- rotation ----------------------------------------------------------------------------

    def rotate_root(self, session: Session) -> int:
        """Make a new root key version and re-wrap every tenant and system key under it.

        The caller commits; only then should older root versions be retired
        (``provider.retire_versions_before``), so a crash mid-way loses nothing.
        """
        new_version = self._provider.add_version()
        for row in session.scalars(select(TenantKey).where(TenantKey.wrapped.is_not(None))):
            context = _tenant_key_context(row.tenant_id, row.purpose, row.version)
            key = self._provider.unwrap(row.root_version, row.wrapped or b"", context)
            row.root_version, row.wrapped = self._provider.wrap(key, context)
        for system_row in session.scalars(select(SystemKey)):
            context = _system_key_context(system_row.name)
            key = self._provider.unwrap(system_row.root_version, system_row.wrapped, context)
            system_row.root_version, system_row.wrapped = self._provider.wrap(key, context)
        session.flush()
        return new_version

    def rotate_tenant_key(self, session: Session, tenant_id: str) -> int:
        """New tenant key version; every data key of the tenant is re-wrapped under it and the
        old version's wrapped key is destroyed. Data ciphertexts are untouched.

        Safe while ingest runs: it holds the tenant's keys exclusively
        (``_hold_tenant_keys``), so it waits for ingests in flight and later ones wait for it;
        and it never destroys an old version that a data key still references."""
        _hold_tenant_keys(session, tenant_id, exclusive=True)
        old_version = self._active_version(session, tenant_id, KEK)
        new_version = old_version + 1
        self._add_tenant_key(session, tenant_id, KEK, new_version)
        new_kek = self._kek(session, tenant_id, new_version)
        olds: dict[int, Cipher] = {}
        for row in session.scalars(
            select(DataKey).where(DataKey.tenant_id == tenant_id, DataKey.wrapped.is_not(None))
        ):
            old = olds.get(row.kek_version)
            if old is None:
                old = olds[row.kek_version] = Cipher(
                    self._tenant_key(session, tenant_id, KEK, row.kek_version)
                )
            key = old.open(row.wrapped or b"",
                           _data_key_context(tenant_id, row.id, row.kek_version))
            row.wrapped = new_kek.seal(key, _data_key_context(tenant_id, row.id, new_version))
            row.kek_version = new_version
        session.flush()
        retired_at: datetime = utcnow()
        session.execute(
            update(TenantKey)
            .where(TenantKey.tenant_id == tenant_id, TenantKey.purpose == KEK,
                   TenantKey.version < new_version)
            .values(status="retired", retired_at=func.coalesce(TenantKey.retired_at,
                                                               retired_at))
        )
        still_used = (select(DataKey.id).where(DataKey.tenant_id == tenant_id,
                                               DataKey.kek_version == TenantKey.version,
                                               DataKey.wrapped.is_not(None)).exists())
        session.execute(
            update(TenantKey)
            .where(TenantKey.tenant_id == tenant_id, TenantKey.purpose == KEK,
                   TenantKey.version < new_version, ~still_used)
            .values(wrapped=None)
        )
        session.flush()
        return new_version


TENANT_LOCK_WAIT_MS = 5000
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout


def _hold_tenant_keys(session: Session, tenant_id: str, *, exclusive: bool) -> None:
    """A transaction-scoped lock on one tenant's keys (PostgreSQL advisory lock): shared by
    the transactions that wrap new data keys, exclusive for a rotation. Under READ COMMITTED
    an ingest would otherwise read the active version while a rotation is re-wrapping, wrap
    its data keys under the version the rotation then destroys, and lose their PII at the
    next restart. SQLite needs none: its write transactions begin IMMEDIATE, one at a time."""
    if session.get_bind().dialect.name != "postgresql":
        return
    if exclusive:
        session.execute(select(func.pg_advisory_xact_lock(tenant_lock_id(tenant_id))))
        return
    # An ingest waits for a rotation at most TENANT_LOCK_WAIT_MS: a long rotation must not
    # hold every worker thread (and so every other route) while it runs.
    session.execute(text(f"SET LOCAL lock_timeout = {int(TENANT_LOCK_WAIT_MS)}"))
    try:
        session.execute(select(func.pg_advisory_xact_lock_shared(tenant_lock_id(tenant_id))))
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise TenantKeysBusyError() from None
        raise
    session.execute(text("SET LOCAL lock_timeout = DEFAULT"))


def tenant_lock_id(tenant_id: str) -> int:
    """The advisory lock id of a tenant's keys: 64 bits of a domain-separated SHA-256 (two
    tenants sharing one would only wait for each other, never lose anything)."""
    digest = hashlib.sha256(b"sellervault/tenant-keys/" + tenant_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
