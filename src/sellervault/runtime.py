"""The process-wide objects every service needs, built once from settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from sellervault.audit.log import AuditLog
from sellervault.clock import SYSTEM_CLOCK, Clock
from sellervault.config import Settings
from sellervault.crypto.keyring import Keyring
from sellervault.crypto.provider import LocalKeyProvider
from sellervault.store.engine import Store


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    store: Store
    keyring: Keyring
    clock: Clock = SYSTEM_CLOCK
    """Where every service reads the time (``sellervault.clock``)."""
    audit: AuditLog = field(init=False)
    """The security log's writers' keyring and clock, and its subscribers."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "audit", AuditLog(self.keyring, self.clock))

    @classmethod
    def open(cls, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> Runtime:
        """Open an initialised data directory (keys and database must already exist)."""
        passphrase = settings.root_key_passphrase
        provider = LocalKeyProvider(
            settings.root_key_file, passphrase.get_secret_value() if passphrase else None
        )
        store = Store.from_url(settings.effective_database_url())
        return cls(settings, store, Keyring(provider, clock), clock)

    @property
    def worker_threads(self) -> int:
        """Threads for requests' database work: the setting, else the database's default."""
        return self.settings.worker_threads or self.store.default_worker_threads

    def close(self) -> None:
        self.audit.close()
        self.store.dispose()
