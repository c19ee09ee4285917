"""The key hierarchy: root key (provider) -> tenant key -> one data key per order.

The keyring keeps the recipes: how each key is made and wrapped, the associated data that
binds a wrapped key to its place, which key wraps which. The wrapped keys themselves are
kept by a key store (``crypto/keystore.py``), and every read, write and destruction of one
goes through it. Unwrapped tenant and system keys are cached in process memory by (tenant,
purpose, version) and by name, which is safe because a version's key never changes (a
destroyed version is never made again); data keys are never cached. Rotation re-wraps
keys, never data. Destruction, the seam cryptographic erase uses, destroys wrapped keys and
evicts every unwrapped copy this process holds. The times kept with keys (made, retired,
destroyed) are read from the runtime's clock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session

from sellervault.clock import Clock
from sellervault.crypto.aead import Cipher, bind, new_key
from sellervault.crypto.blind_index import BlindIndex
from sellervault.crypto.errors import CryptoError, TenantKeysDestroyedError
from sellervault.crypto.keystore import (
    ACTIVE,
    DESTROYED,
    KEK,
    KeyStore,
    SqlKeyStore,
    StoredDataKey,
    StoredSystemKey,
    StoredTenantKey,
)
from sellervault.crypto.provider import KeyProvider
from sellervault.crypto.pseudonyms import PSEUDONYM_KEY, BuyerPseudonyms
from sellervault.store.driver import Db
from sellervault.store.engine import after_commit
from sellervault.store.ids import new_ids

INDEX = "index"


class UnknownTenantKeyError(CryptoError):
    """The tenant has no key of the asked purpose (never set up, or erased)."""


class KeyNotCachedError(CryptoError):
    """Asked to open a data key without a database, but its tenant key is not (or no longer:
    a destruction evicted it) unwrapped in this process: read it with a database."""


class DataKeyDestroyedError(CryptoError):
    """The data key was destroyed: the data it protected is cryptographically erased."""


@dataclass(frozen=True, slots=True)
class NewDataKey:
    id: str
    cipher: Cipher


@dataclass(frozen=True, slots=True)
class DestroyedKeys:
    """How many wrapped keys one destruction destroyed (none counted twice: a key destroyed
    before is not there to destroy again)."""

    data_keys: int
    tenant_keys: int


def _tenant_key_context(tenant_id: str, purpose: str, version: int) -> bytes:
    return bind("tenant-key", tenant_id, purpose, version)


def _system_key_context(name: str) -> bytes:
    return bind("system-key", name)


def _data_key_context(tenant_id: str, data_key_id: str, kek_version: int) -> bytes:
    return bind("data-key", tenant_id, data_key_id, kek_version)


class Keyring:
    """Process-wide access to the key hierarchy, backed by a key provider (the root key) and
    a key store (the wrapped keys; the SQL tables unless another is given)."""

    def __init__(self, provider: KeyProvider, clock: Clock,
                 store: KeyStore | None = None) -> None:
        self._provider = provider
        self._clock = clock
        self._store: KeyStore = store if store is not None else SqlKeyStore()
        self._tenant_keys: dict[tuple[str, str, int], bytes] = {}
        self._keks: dict[tuple[str, int], Cipher] = {}
        self._system_keys: dict[str, bytes] = {}
        self._pseudonyms: BuyerPseudonyms | None = None
        # Per tenant, how many times its cached keys were evicted. A thread that read a key
        # before an eviction caches it only if the count has not moved meanwhile, so a key
        # read just before its destruction committed is not cached just after.
        self._evictions: dict[str, int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Keyring(provider={self._provider.name!r})"

    @property
    def provider(self) -> KeyProvider:
        return self._provider

    @property
    def clock(self) -> Clock:
        return self._clock

    # -- tenant keys -------------------------------------------------------------------------

    def ensure_tenant(self, session: Session, tenant_id: str) -> bool:
        """Create the tenant's key-encryption and index keys if it has none yet, and hold its
        keys steady until the transaction ends (``KeyStore.hold_tenant``): the data keys this
        transaction wraps are under the tenant key that is active when it commits. Whether
        this transaction created the tenant (of two first ingests at once, exactly one).

        A tenant whose keys were destroyed stays erased (``TenantKeysDestroyedError``): new
        keys under its name would be new versions of keys other processes may still hold."""
        self._store.hold_tenant(session, tenant_id, exclusive=False)
        existing = self._store.tenant_keys(session, tenant_id)
        if any(key.status == DESTROYED for key in existing):
            raise TenantKeysDestroyedError()
        purposes = {key.purpose for key in existing}
        created = False
        for purpose in (KEK, INDEX):
            if purpose not in purposes:
                added = self._add_tenant_key(session, tenant_id, purpose, version=1)
                created |= added and purpose == KEK
        return created

    def _add_tenant_key(self, session: Session, tenant_id: str, purpose: str,
                        version: int) -> bool:
        """Store a new wrapped tenant key. Two first ingests of a new tenant may both get here:
        the second one's insert waits for the first's commit and then adds nothing, and it
        reads (unwraps) the stored key like every later use."""
        root_version, wrapped = self._provider.wrap(
            new_key(), _tenant_key_context(tenant_id, purpose, version)
        )
        return self._store.add_tenant_key(
            session, StoredTenantKey(tenant_id, purpose, version, root_version, wrapped, ACTIVE),
            self._clock.now())

    def _active_version(self, session: Session, tenant_id: str, purpose: str) -> int:
        version = self._store.active_version(session, tenant_id, purpose)
        if version is None:
            raise UnknownTenantKeyError(f"tenant has no active {purpose} key")
        return version

    def _tenant_key(self, db: Db, tenant_id: str, purpose: str, version: int) -> bytes:
        cache_key = (tenant_id, purpose, version)
        key = self._tenant_keys.get(cache_key)
        if key is not None:
            return key
        evictions = self._evictions.get(tenant_id, 0)
        stored = self._store.tenant_key(db, tenant_id, purpose, version)
        if stored is None or stored.wrapped is None:
            if stored is not None and stored.status == DESTROYED:
                raise TenantKeysDestroyedError()
            raise UnknownTenantKeyError(f"tenant has no {purpose} key version {version}")
        key = self._provider.unwrap(stored.root_version, stored.wrapped,
                                    _tenant_key_context(tenant_id, purpose, version))
        with self._lock:
            if self._evictions.get(tenant_id, 0) == evictions:
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
        keys: list[NewDataKey] = []
        now = self._clock.now()

        def wrapped() -> Iterator[tuple[str, bytes]]:
            for data_key_id in new_ids(count, now):  # time-ordered: the primary-key index appends
                key = new_key()
                keys.append(NewDataKey(data_key_id, Cipher(key)))
                yield data_key_id, kek.seal(key, _data_key_context(tenant_id, data_key_id,
                                                                   kek_version))

        self._store.add_data_keys(session, tenant_id, kek_version, now, wrapped())
        if len(keys) != count:
            raise RuntimeError("data keys were not all stored")
        return keys

    def data_keys(self, session: Session, tenant_id: str,
                  data_key_ids: Sequence[str]) -> dict[str, Cipher]:
        """Unwrap existing data keys of one tenant; a key of another tenant is never returned."""
        if not data_key_ids:
            return {}
        found = {stored.id: self.open_data_key(session, tenant_id, stored.id,
                                               stored.kek_version, stored.wrapped)
                 for stored in self._store.data_keys(session, tenant_id, data_key_ids)}
        if set(data_key_ids) - found.keys():
            raise DataKeyDestroyedError("data key missing")
        return found

    def open_data_key(self, db: Db | None, tenant_id: str, data_key_id: str,
                      kek_version: int | None, wrapped: bytes | None) -> Cipher:
        """Unwrap one data key read by the caller (see ``keystore.join_data_key``); the
        associated data binds it to its tenant, id and tenant-key version, so a key row moved
        between tenants or ids does not open. With ``db`` None (code in the event loop, which
        must not block) only a tenant key unwrapped in this process opens it; otherwise
        ``KeyNotCachedError``, and the caller reads it with a database."""
        if wrapped is None or kek_version is None:  # destroyed, or no such key
            raise DataKeyDestroyedError("data key destroyed")
        try:
            kek = self._kek(db, tenant_id, kek_version)
        except TenantKeysDestroyedError:  # read just before its tenant's keys were destroyed
            raise DataKeyDestroyedError("data key destroyed with its tenant's keys") from None
        return Cipher(kek.open(wrapped, _data_key_context(tenant_id, data_key_id, kek_version)))

    def has_kek(self, tenant_id: str, version: int | None) -> bool:
        """Whether the tenant's key-encryption key of ``version`` is unwrapped in this
        process already (so opening its data keys needs no database)."""
        return (tenant_id, version) in self._keks

    def holds_keys_of(self, tenant_id: str) -> bool:
        """Whether this process holds any unwrapped key of the tenant (what a destruction
        must leave false)."""
        with self._lock:
            return (any(cached[0] == tenant_id for cached in self._tenant_keys)
                    or any(cached[0] == tenant_id for cached in self._keks))

    def _kek(self, db: Db | None, tenant_id: str, version: int) -> Cipher:
        """The tenant's key-encryption key of ``version``, ready to use (built once)."""
        kek = self._keks.get((tenant_id, version))
        if kek is None:
            if db is None:
                raise KeyNotCachedError()
            evictions = self._evictions.get(tenant_id, 0)
            kek = Cipher(self._tenant_key(db, tenant_id, KEK, version))
            with self._lock:
                if self._evictions.get(tenant_id, 0) == evictions:
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
        stored = self._store.system_key(db, name)
        if stored is None:
            return None
        return self._remember_system_key(name, self._provider.unwrap(
            stored.root_version, stored.wrapped, _system_key_context(name)))

    def buyer_pseudonyms(self, db: Db | None) -> BuyerPseudonyms:
        """The buyer pseudonyms (``crypto.pseudonyms``), their key created on first use. With
        no database, only if this process holds the key already (``KeyNotCachedError``)."""
        pseudonyms = self._pseudonyms
        if pseudonyms is None:
            if db is None:
                raise KeyNotCachedError()
            pseudonyms = self._pseudonyms = BuyerPseudonyms(self.system_key(db, PSEUDONYM_KEY))
        return pseudonyms

    def _remember_system_key(self, name: str, key: bytes) -> bytes:
        with self._lock:
            self._system_keys[name] = key
        return key

    def system_key(self, db: Db, name: str) -> bytes:
        """A named service-wide secret, created on first use and wrapped by the root key.
        (Every start makes the missing ones first, on the record: ``bootstrap``; making one
        here is for a caller that runs before, such as ``init``'s first event.)"""
        key = self.find_system_key(db, name)
        if key is not None:
            return key
        key = new_key()
        root_version, wrapped = self._provider.wrap(key, _system_key_context(name))
        self._store.add_system_key(db, StoredSystemKey(name, root_version, wrapped),
                                   self._clock.now())
        return self._remember_system_key(name, key)

    def make_system_key(self, db: Db, name: str) -> bool:
        """Make the named system key unless it exists: whether this call made it. Not kept in
        memory (the caller's transaction may yet roll back): its first use reads it."""
        if self.find_system_key(db, name) is not None:
            return False
        root_version, wrapped = self._provider.wrap(new_key(), _system_key_context(name))
        self._store.add_system_key(db, StoredSystemKey(name, root_version, wrapped),
                                   self._clock.now())
        return True

    # -- rotation ----------------------------------------------------------------------------

    def rotate_root(self, session: Session) -> int:
        """Make a new root key version and re-wrap every tenant and system key under it.

        The caller commits; only then should older root versions be retired
        (``provider.retire_versions_before``), so a crash mid-way loses nothing.
        """
        new_version = self._provider.add_version()
        tenant_keys = []
        for stored in self._store.tenant_keys_under_root(session):
            root_version, wrapped = self._rewrap_under_root(
                stored.root_version, stored.wrapped or b"",
                _tenant_key_context(stored.tenant_id, stored.purpose, stored.version))
            tenant_keys.append(replace(stored, root_version=root_version, wrapped=wrapped))
        self._store.rewrap_tenant_keys(session, tenant_keys)
        system_keys = []
        for system in self._store.system_keys(session):
            root_version, wrapped = self._rewrap_under_root(
                system.root_version, system.wrapped, _system_key_context(system.name))
            system_keys.append(StoredSystemKey(system.name, root_version, wrapped))
        self._store.rewrap_system_keys(session, system_keys)
        return new_version

    def _rewrap_under_root(self, root_version: int, wrapped: bytes,
                           context: bytes) -> tuple[int, bytes]:
        key = self._provider.unwrap(root_version, wrapped, context)
        return self._provider.wrap(key, context)

    def rotate_tenant_key(self, session: Session, tenant_id: str) -> int:
        """New tenant key version; every data key of the tenant is re-wrapped under it and the
        old version's wrapped key is destroyed. Data ciphertexts are untouched.

        Safe while ingest runs: it holds the tenant's keys exclusively
        (``KeyStore.hold_tenant``), so it waits for ingests in flight and later ones wait for
        it; and it never destroys an old version that a data key still references."""
        self._store.hold_tenant(session, tenant_id, exclusive=True)
        old_version = self._active_version(session, tenant_id, KEK)
        new_version = old_version + 1
        self._add_tenant_key(session, tenant_id, KEK, new_version)
        new_kek = self._kek(session, tenant_id, new_version)
        olds: dict[int, Cipher] = {}
        rewrapped = []
        for stored in self._store.live_data_keys(session, tenant_id):
            old = olds.get(stored.kek_version)
            if old is None:
                old = olds[stored.kek_version] = Cipher(
                    self._tenant_key(session, tenant_id, KEK, stored.kek_version))
            key = old.open(stored.wrapped or b"",
                           _data_key_context(tenant_id, stored.id, stored.kek_version))
            rewrapped.append(StoredDataKey(stored.id, new_version, new_kek.seal(
                key, _data_key_context(tenant_id, stored.id, new_version))))
        self._store.rewrap_data_keys(session, tenant_id, rewrapped)
        self._store.retire_tenant_keys(session, tenant_id, KEK, new_version, self._clock.now())
        return new_version

    # -- destruction -------------------------------------------------------------------------

    def destroy_data_keys(self, session: Session, tenant_id: str,
                          data_key_ids: Sequence[str]) -> DestroyedKeys:
        """Destroy these data keys of the tenant: once the transaction commits, the orders
        they protect are cryptographically erased, in every process (each use of a data key
        reads it with its record, and data keys are never cached, so there is no copy to
        evict). A key of another tenant, or one destroyed before, is left alone and not
        counted. What the database and its backups may still hold, and what makes that
        unreadable: ``SqlKeyStore``.

        It needs no lock on the tenant: a rotation re-wrapping at the same moment updates by
        id, so a key deleted meanwhile stays deleted; an ingest re-sending the order either
        read the key before (the order was stored before its erasure) or finds it gone
        (``DataKeyDestroyedError``). No security event is written here: the caller (the
        erasure that asked for it) records one in the same transaction."""
        count = self._store.destroy_data_keys(session, tenant_id, list(data_key_ids))
        return DestroyedKeys(data_keys=count, tenant_keys=0)

    def data_keys_held(self, session: Session, tenant_id: str,
                       data_key_ids: Sequence[str] | None = None) -> int:
        """How many of these data keys of the tenant (None: any) still exist: after a
        destruction, none (what a deletion's verification checks)."""
        return self._store.count_data_keys(session, tenant_id, data_key_ids)

    def destroy_tenant_keys(self, session: Session, tenant_id: str, *,
                            data_keys: bool = True) -> DestroyedKeys:
        """Destroy every key of the tenant: its data keys and every version of its
        key-encryption and blind-index keys. (``data_keys`` False: its data keys are left
        for the caller to delete a batch at a time, as a large tenant's deletion does;
        wrapped under key-encryption keys that no longer exist, none of them opens.) Once the
        transaction commits, every order of the
        tenant is erased (``DataKeyDestroyedError``), its blind indexes can no longer be
        computed (``UnknownTenantKeyError``), and the tenant stays erased: an ingest gets
        ``TenantKeysDestroyedError``, never new keys.

        It holds the tenant's keys exclusively, as a rotation does: it waits for ingests in
        flight (and destroys the data keys they made) and later ingests wait for it. Every
        unwrapped copy this process holds is evicted now and again when the transaction
        commits (through ``Store.transaction``); a copy read just before the commit is not
        cached after it (``_evictions``). Python cannot overwrite the bytes: they are freed,
        not wiped. Another process (a server, when a command destroys) keeps its copies until
        it exits, and can open nothing with them: the wrapped keys they open are gone. No
        security event is written here: the caller records one in the same transaction."""
        self._store.hold_tenant(session, tenant_id, exclusive=True)
        destroyed = DestroyedKeys(
            data_keys=self._store.destroy_data_keys(session, tenant_id, None) if data_keys
            else 0,
            tenant_keys=self._store.destroy_tenant_keys(session, tenant_id, self._clock.now()))
        self._evict(tenant_id)
        after_commit(session, lambda: self._evict(tenant_id))
        return destroyed

    def _evict(self, tenant_id: str) -> None:
        with self._lock:
            self._evictions[tenant_id] = self._evictions.get(tenant_id, 0) + 1
            for cached in [cached for cached in self._tenant_keys if cached[0] == tenant_id]:
                del self._tenant_keys[cached]
            for kek in [kek for kek in self._keks if kek[0] == tenant_id]:
                del self._keks[kek]
