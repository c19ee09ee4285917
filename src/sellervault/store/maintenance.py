"""Keeping servers and a restore apart.

A restore replaces the database under everything that uses it: a server running through
one would serve the restored rows before the erasures made since the backup are applied
again (``deletion.ledger``), and keep writing into a SQLite file that is no longer the
vault's. So every server holds a *shared* claim on the vault for as long as it runs, and a
restore takes the claim *exclusively*: it refuses to begin while any server runs, and no
server starts while it works.

The claim is the database's own where several hosts share it: a PostgreSQL session-level
advisory lock (shared / exclusive), held on a connection of its own and released by
PostgreSQL when that connection ends, however the process ends. On SQLite (one host) it is
an ``flock`` on a file beside the database, released by the kernel when the process ends.
Neither waits: a claim that cannot be had now is refused with what to do."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from sellervault.config import Settings
from sellervault.store.engine import make_engine

ADVISORY_KEY = 0x5345_4C4C_4552_5641
"""The advisory lock's key ("SELLERVA"): one vault per database."""

SERVER_RUNNING = ("a SellerVault server is running on this vault: stop every server before "
                  "a restore")
RESTORE_RUNNING = "a restore of this vault is under way: start the server once it has finished"


class MaintenanceError(Exception):
    """The claim is held the other way (a server running, or a restore under way)."""


@contextmanager
def serving(settings: Settings) -> Iterator[None]:
    """A server's claim, held while it runs (refused while a restore works)."""
    with _claim(settings, exclusive=False, refusal=RESTORE_RUNNING):
        yield


@contextmanager
def restoring(settings: Settings) -> Iterator[None]:
    """A restore's claim (refused while any server runs)."""
    with _claim(settings, exclusive=True, refusal=SERVER_RUNNING):
        yield


@contextmanager
def _claim(settings: Settings, *, exclusive: bool, refusal: str) -> Iterator[None]:
    if settings.database_url is None:
        with _file_claim(settings, exclusive, refusal):
            yield
        return
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        with engine.connect() as connection:
            function = "pg_try_advisory_lock" if exclusive else "pg_try_advisory_lock_shared"
            if not connection.scalar(text(f"SELECT {function}(:key)"), {"key": ADVISORY_KEY}):
                raise MaintenanceError(refusal)
            connection.commit()  # (a session-level lock outlives the transaction)
            yield
    finally:  # (the connection closed: PostgreSQL releases the lock)
        engine.dispose()


@contextmanager
def _file_claim(settings: Settings, exclusive: bool, refusal: str) -> Iterator[None]:
    path = settings.sqlite_file.with_name(settings.sqlite_file.name + ".claim")
    if not path.parent.is_dir():  # no vault here: nothing to keep apart (opening it says so)
        yield
        return
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                        | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MaintenanceError(refusal) from None
        yield
    finally:
        os.close(descriptor)  # (the lock goes with the descriptor)
