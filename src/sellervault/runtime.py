"""The process-wide objects every service needs, built once from settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from sellervault.access.killswitches import SwitchBoard
from sellervault.audit.log import AuditLog
from sellervault.clock import SYSTEM_CLOCK, Clock
from sellervault.config import Settings
from sellervault.counters.factory import open_counters
from sellervault.counters.interface import Counters
from sellervault.counters.local import LocalCounters
from sellervault.crypto.keyring import Keyring
from sellervault.crypto.provider import LocalKeyProvider
from sellervault.store.engine import Store
from sellervault.store.maintenance import Claim


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    store: Store
    keyring: Keyring
    clock: Clock = SYSTEM_CLOCK
    """Where every service reads the time (``sellervault.clock``)."""
    audit: AuditLog = field(init=False)
    """The security log's writers' keyring and clock, and its subscribers."""
    counters: Counters = None  # type: ignore[assignment]  # (made in __post_init__)
    """Shared counters and flags (``sellervault.counters``): Redis when configured, else in
    this process. A runtime made by hand without them gets in-process ones on its clock."""

    switches: SwitchBoard = field(init=False)
    """This process's reading of the kill switches (``access.killswitches``)."""
    claim: Claim | None = None
    """This process's shared claim on the vault (``store.maintenance``), released with the
    runtime: no restore begins while it is held."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "audit", AuditLog(self.keyring, self.clock))
        object.__setattr__(self, "switches", SwitchBoard())
        if self.counters is None:
            object.__setattr__(self, "counters", LocalCounters(self.clock))

    @classmethod
    def open(cls, settings: Settings, clock: Clock = SYSTEM_CLOCK,
             claim: Claim | None = None) -> Runtime:
        """Open an initialised data directory (keys and database must already exist),
        holding ``claim`` until closed."""
        passphrase = settings.root_key_passphrase
        provider = LocalKeyProvider(
            settings.root_key_file, passphrase.get_secret_value() if passphrase else None
        )
        store = Store.from_url(settings.effective_database_url())
        keyring = Keyring(provider, clock)
        try:
            counters = open_counters(settings, clock, store, keyring)
        except BaseException:
            store.dispose()
            raise
        return cls(settings, store, keyring, clock, counters, claim)

    @property
    def worker_threads(self) -> int:
        """Threads for requests' database work: the setting, else the database's default."""
        return self.settings.worker_threads or self.store.default_worker_threads

    def close(self) -> None:
        try:
            self.audit.close()
            self.counters.close()
            self.store.dispose()
        finally:  # (whatever failed above, no restore stays shut out)
            if self.claim is not None:
                self.claim.release()
