"""Keeping a restore apart from everything else that uses the vault.

A restore replaces the database under whatever has it open: a server would serve the
restored rows before the erasures made since the backup are applied again
(``deletion.ledger``), and any process writing to a SQLite file that is swapped under it can
corrupt it. So every process that opens the vault (a server, a CLI command, a job run by
hand: ``bootstrap.open_runtime``) holds a *shared* claim on it for as long as it has it
open, and a restore takes the claim *exclusively*: it refuses to begin while anything has
the vault open, and nothing opens it while the restore works.

The claim is the database's own where several hosts share it: a PostgreSQL session-level
advisory lock (shared / exclusive) on a connection of its own, released by PostgreSQL when
that connection ends, however the process ends. A connection can end under a running
server (a database restart, a terminated backend), taking its claim with it: a server
therefore watches its claim (``Claim.watch``) and takes it again, or stops if a restore
got it first. On SQLite (one host) the claim is an ``flock`` on a file beside the database,
released by the kernel when the process ends. Neither waits: a claim that cannot be had now
is refused with what to do."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from sellervault.config import Settings
from sellervault.store.engine import make_lock_engine

ADVISORY_KEY = 0x5345_4C4C_4552_5641
"""The advisory lock's key ("SELLERVA"): one vault per database."""

IN_USE = ("the vault is in use (a SellerVault server or command has it open): stop every "
          "server and command before a restore")
RESTORE_RUNNING = "a restore of this vault is under way: try again once it has finished"
WATCH_SECONDS = 2.0
"""How often a server checks that it still holds its claim."""

log = logging.getLogger("sellervault.maintenance")


class MaintenanceError(Exception):
    """The claim is held the other way (the vault in use, or a restore under way)."""


class Claim:
    """A shared or exclusive claim on the vault, held until ``release``."""

    def __init__(self, settings: Settings, *, exclusive: bool) -> None:
        self._settings, self._exclusive = settings, exclusive
        self._lock = threading.Lock()
        self._released = False
        self._stop = threading.Event()
        self._descriptor: int | None = None
        self._connection: Connection | None = None
        self._engine: Engine | None = None
        if settings.database_url is not None:
            self._engine = make_lock_engine(settings.database_url.get_secret_value())
        try:
            self._take()
        except BaseException:
            if self._engine is not None:
                self._engine.dispose()
            raise

    def _take(self) -> None:
        refusal = IN_USE if self._exclusive else RESTORE_RUNNING
        if self._engine is None:
            self._descriptor = _file_claim(self._settings, self._exclusive, refusal)
            return
        connection = self._engine.connect()
        try:
            function = ("pg_try_advisory_lock" if self._exclusive
                        else "pg_try_advisory_lock_shared")
            if not connection.scalar(text(f"SELECT {function}(:key)"), {"key": ADVISORY_KEY}):
                raise MaintenanceError(refusal)
            connection.commit()  # (a session-level lock outlives the transaction)
        except BaseException:
            connection.close()  # (no pool: the session ends, and any lock it took)
            raise
        self._connection = connection

    def held(self) -> bool:
        """Whether the claim is still held: on PostgreSQL, whether its session still holds
        the advisory lock (asked of ``pg_locks``, within the connection's statement
        timeout; a connection that ended answers no)."""
        with self._lock:
            if self._released:
                return False
            if self._engine is None:
                return True  # (an flock ends only with its descriptor, which is ours)
            if self._connection is None:
                return False
            try:
                count = self._connection.scalar(_HELD, {"low": ADVISORY_KEY & 0xFFFFFFFF,
                                                        "high": ADVISORY_KEY >> 32})
                self._connection.commit()
            except SQLAlchemyError:  # (the connection ended: its error, then "invalid")
                return False
            return bool(count)

    def renew(self) -> None:
        """Take the claim again after its connection ended (``MaintenanceError`` if a
        restore took it meanwhile; a database error if it cannot be reached yet). Nothing,
        once released."""
        with self._lock:
            if self._released:
                return
            if self._connection is not None:
                self._connection.invalidate()
                self._connection.close()
                self._connection = None
            self._take()

    def watch(self, on_lost: Callable[[], None], every: float = WATCH_SECONDS) -> None:
        """Check the claim every ``every`` seconds until released; take it again when its
        connection has ended, and call ``on_lost`` (stop at once) if a restore has it. (An
        flock cannot be lost: nothing to watch.)"""
        if self._engine is None:
            return

        def run() -> None:
            while not self._stop.wait(every):
                if self.held():
                    continue
                try:
                    self.renew()
                    log.warning("the vault's claim was lost with its database connection "
                                "and taken again")
                except MaintenanceError:
                    log.error("the vault's claim was lost and a restore holds it now: "
                              "stopping at once")
                    on_lost()
                    return
                except SQLAlchemyError as exc:  # the database is away: try again next time
                    log.error("the vault's claim cannot be taken again yet (%s)",
                              type(exc).__name__)
        threading.Thread(target=run, name="sellervault-claim-watch", daemon=True).start()

    def release(self) -> None:
        """Give the claim up (again: nothing). The lock goes with the descriptor or with
        the session."""
        with self._lock:
            if self._released:
                return
            self._released = True
            self._stop.set()
            if self._descriptor is not None:
                os.close(self._descriptor)
            if self._connection is not None:
                self._connection.close()
            if self._engine is not None:
                self._engine.dispose()


_HELD = text("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND granted AND "
             "locktype = 'advisory' AND objid = :low AND classid = :high")


@contextmanager
def restoring(settings: Settings) -> Iterator[Claim]:
    """A restore's claim (refused while anything has the vault open)."""
    claim = Claim(settings, exclusive=True)
    try:
        yield claim
    finally:
        claim.release()


def _file_claim(settings: Settings, exclusive: bool, refusal: str) -> int | None:
    path = settings.sqlite_file.with_name(settings.sqlite_file.name + ".claim")
    if not path.parent.is_dir():  # no vault here: nothing to keep apart (opening it says so)
        return None
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(descriptor, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                    | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise MaintenanceError(refusal) from None
    return descriptor
