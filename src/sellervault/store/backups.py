"""Backups: ``sellervault backup`` and ``sellervault restore``.

A backup is one file: a tar archive (the database, the data directory's other files, a
manifest) encrypted with age (the age-encryption.org/v1 format: X25519 recipients,
ChaCha20-Poly1305 in 64 KiB chunks; ``pyrage``) to the vault's backup identity, which lives
in ``keys/`` beside the root key, and optionally to an operator's own age recipient as well
(so a backup can be opened with the ``age`` tool far from the vault).

What a backup holds, and what it does not:

- the database as a consistent snapshot (SQLite's online backup; PostgreSQL's ``pg_dump``
  custom format), in which the PII stays sealed under its data keys, wrapped under the
  tenants' keys, wrapped under the root key;
- the data directory's other files (TLS certificate and key, configuration);
- never ``keys/``: not the root key (a backup and the root key together are all the PII in
  clear: they are kept apart), not the backup identity, and not the erasure ledger
  (``deletion.ledger``), which is how key destruction reaches the backups: a database
  restored from a backup taken before a deletion has that deletion applied again at its
  first start, before anything is served;
- never the checkpoint file: it is the security log's outside witness, and after a restore
  it rightly says that the events after the backup are gone.

Who made a backup: age encrypts to a *public* recipient, so anyone who has it can make a
file that opens. A restore therefore trusts only a backup this vault made: the manifest
lists every member's SHA-256 and carries an HMAC-SHA256 (``manifest.mac``) under a key
derived (HKDF-SHA256) from the backup identity in ``keys/``, which never leaves the vault.
A restore checks the MAC (in constant time) before it reads anything else of the archive,
and each member against its digest before it writes anything.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyrage
from psycopg.conninfo import conninfo_to_dict
from pyrage import x25519

from sellervault import __version__
from sellervault.config import Settings
from sellervault.crypto.derivation import derive_key

FORMAT = 2
"""Format 2: the manifest holds each member's SHA-256 and is authenticated (format 1, an
unauthenticated manifest, is refused)."""
IDENTITY_FILE = "backup-identity.txt"
MANIFEST, MANIFEST_MAC = "manifest.json", "manifest.mac"
MAX_MANIFEST_BYTES = 1 << 20
_MAC_INFO = b"sellervault backup manifest v2"


class BackupError(Exception):
    """A backup that cannot be made or restored: the reason, never key material."""


@dataclass(frozen=True)
class Manifest:
    format: int
    version: str
    dialect: str
    created_at: str
    files: list[str]
    sha256: dict[str, str]
    """Every member of the archive but the manifest and its MAC: its SHA-256 (hex)."""


def identity(settings: Settings, *, make: bool = True) -> x25519.Identity:
    """The vault's backup identity (made on first use, readable by its owner only; a
    restore never makes one: ``make`` False, and a missing one is an error)."""
    path = settings.root_key_file.parent / IDENTITY_FILE
    if not path.exists():
        if not make:
            raise BackupError(f"{path} is missing: no backup of this vault can be opened or "
                              "authenticated without it (keep it with the root key)")
        made = x25519.Identity.generate()
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(str(made) + "\n")
    return x25519.Identity.from_str(path.read_text().strip())


def manifest_mac(settings: Settings, body: bytes) -> str:
    """The MAC of a manifest, under a key only this vault holds: derived from its backup
    identity (HKDF-SHA256, a purpose of its own), so no new secret is kept."""
    key = derive_key(str(identity(settings, make=False)).encode(), _MAC_INFO)
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def backup(settings: Settings, out: Path, now: datetime,
           also_to: list[str] | None = None) -> Manifest:
    """Write an encrypted backup of the database and the data directory to ``out``."""
    recipients: list[Any] = [identity(settings).to_public()]
    for text in also_to or []:
        try:
            recipients.append(x25519.Recipient.from_str(text))
        except pyrage.RecipientError:
            raise BackupError("not an age recipient (age1...)") from None
    dialect = "postgresql" if settings.database_url is not None else "sqlite"
    with tempfile.TemporaryDirectory(prefix="sellervault-backup-") as scratch:
        work = Path(scratch)
        database = work / ("database.dump" if dialect == "postgresql" else "sellervault.db")
        _dump(settings, database)
        files = _files(settings)
        members = {f"database/{database.name}": database}
        for path in files:  # copied first: what is hashed is exactly what is archived, even
            # if the file changes meanwhile (a certificate renewed, the configuration edited)
            name = f"files/{path.relative_to(settings.data_dir)}"
            members[name] = work / name
            members[name].parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, members[name])
        manifest = Manifest(FORMAT, __version__, dialect, now.isoformat(),
                            [str(path.relative_to(settings.data_dir)) for path in files],
                            {name: _sha256(path) for name, path in members.items()})
        body = json.dumps(manifest.__dict__, indent=1).encode()
        archive = work / "backup.tar"
        with tarfile.open(archive, "w") as tar:
            _add_bytes(tar, MANIFEST, body)
            _add_bytes(tar, MANIFEST_MAC, manifest_mac(settings, body).encode())
            for name, path in members.items():
                tar.add(path, arcname=name)
        partial = out.with_name(out.name + ".partial")
        pyrage.encrypt_file(str(archive), str(partial), recipients)
        partial.replace(out)  # (a backup cut short is never mistaken for one)
    return manifest


def restore(settings: Settings, backup_file: Path) -> Manifest:
    """Put the database and files of ``backup_file`` in place (the caller holds the vault
    alone: ``store.maintenance``). Nothing is written before the whole archive is opened,
    authenticated and checked. The erasures since the backup are applied at the next start
    (``bootstrap.open_runtime``)."""
    with tempfile.TemporaryDirectory(prefix="sellervault-restore-") as scratch:
        work = Path(scratch)
        archive = work / "backup.tar"
        if not backup_file.is_file():
            raise BackupError(f"{backup_file}: no such backup file")
        try:  # (age authenticates every chunk: nothing is unpacked before all of it opened)
            pyrage.decrypt_file(str(backup_file), str(archive),
                                [identity(settings, make=False)])
        except (pyrage.DecryptError, OSError):
            raise BackupError("the backup does not open with this vault's backup identity "
                              "(another vault's, damaged, or cut short)") from None
        try:
            with tarfile.open(archive, "r:") as tar:  # (uncompressed, as written: no bombs)
                manifest = _authentic_manifest(settings, tar)
                listed = _listed_members(tar, manifest)
                tar.extractall(work / "backup", members=listed, filter="data")
        except tarfile.TarError:
            raise BackupError("not a backup of this vault (not the archive it writes)") \
                from None
        unpacked = work / "backup"
        for name, digest in manifest.sha256.items():
            member = unpacked / name
            if not member.is_file() or member.is_symlink() or not hmac.compare_digest(
                    _sha256(member), digest):
                raise BackupError("the backup's contents do not match its manifest")
        dialect = "postgresql" if settings.database_url is not None else "sqlite"
        if manifest.dialect != dialect:
            raise BackupError(f"a {manifest.dialect} backup cannot be restored into this "
                              f"{dialect} vault")
        database = "database/" + ("database.dump" if dialect == "postgresql"
                                  else "sellervault.db")
        targets = [_target(settings, name, unpacked / "files") for name in manifest.files]
        if database not in manifest.sha256:  # (each file was found by _target: extracted,
            # so listed and checked)
            raise BackupError("the backup's manifest names no database")
        _load(settings, unpacked / "database")
        for name, target in zip(manifest.files, targets, strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(unpacked / "files" / name, target)
    return manifest


def _authentic_manifest(settings: Settings, tar: tarfile.TarFile) -> Manifest:
    """The manifest, if this vault made it (its MAC checked before anything else is read;
    the two read only if they are the archive's first members and of a manifest's size)."""
    try:
        body, mac = (_read_member(tar, name, limit) for name, limit in (
            (MANIFEST, MAX_MANIFEST_BYTES), (MANIFEST_MAC, 128)))
    except KeyError:
        raise BackupError("not a backup of this vault (no authenticated manifest: made by "
                          "another tool, or by an older SellerVault)") from None
    if not hmac.compare_digest(manifest_mac(settings, body).encode(), mac.strip()):
        raise BackupError("the backup was not made by this vault (its manifest's MAC does "
                          "not verify): refused")
    fields = json.loads(body)
    if fields.get("format") != FORMAT:
        raise BackupError(f"a backup of format {fields.get('format')} cannot be restored "
                          f"(this version reads format {FORMAT})")
    return Manifest(**fields)


def _read_member(tar: tarfile.TarFile, name: str, limit: int) -> bytes:
    """One of the archive's first two members (``KeyError``: not there, not a file, or
    larger than ``limit``): read without scanning the rest of the archive first."""
    member = tar.next()
    opened = tar.extractfile(member) if member is not None and member.name == name \
        and member.isfile() and member.size <= limit else None
    if opened is None:
        raise KeyError(name)
    return opened.read()


def _listed_members(tar: tarfile.TarFile, manifest: Manifest) -> list[tarfile.TarInfo]:
    """The archive's members past the manifest, exactly those the manifest lists, each a
    regular file: anything else in the archive refuses it."""
    members = tar.getmembers()[2:]
    names = [member.name for member in members]
    if any(not member.isfile() for member in members) or len(set(names)) != len(names) \
            or set(names) != set(manifest.sha256):
        raise BackupError("the backup holds files its manifest does not list")
    return members


def _add_bytes(tar: tarfile.TarFile, name: str, body: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(body)
    tar.addfile(info, io.BytesIO(body))


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _target(settings: Settings, name: str, files: Path) -> Path:
    """Where a file of the backup goes back: inside the data directory, never into what a
    backup does not hold (keys/, the checkpoint file, the database), and only a regular
    file the archive holds. (The age file is encrypted to the vault's public recipient,
    which anyone may hold: what is in it is checked, not trusted.)"""
    relative = Path(name)
    target = (settings.data_dir / relative).resolve()
    source = files / relative
    if relative.is_absolute() or ".." in relative.parts or not target.is_relative_to(
            settings.data_dir.resolve()) or _skipped(settings, target) \
            or source.is_symlink() or not source.is_file():
        raise BackupError("the backup's manifest names a file it may not restore")
    return target


def _skipped(settings: Settings, path: Path) -> bool:
    """What a backup never holds (nor a restore writes): keys/, the checkpoint file's
    folder, the SQLite database and its journals."""
    path = path.resolve()
    folders = (settings.root_key_file.parent, settings.checkpoint_file.parent)
    return any(path.is_relative_to(folder.resolve()) for folder in folders) or \
        path.name.startswith(settings.sqlite_file.name)


def _files(settings: Settings) -> list[Path]:
    return sorted(path for path in settings.data_dir.rglob("*")
                  if path.is_file() and not path.is_symlink() and not _skipped(settings, path))


_LIBPQ_ENVIRONMENT = {
    "host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "dbname": "PGDATABASE",
    "user": "PGUSER", "password": "PGPASSWORD", "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL", "connect_timeout": "PGCONNECT_TIMEOUT", "options": "PGOPTIONS",
    "application_name": "PGAPPNAME", "target_session_attrs": "PGTARGETSESSIONATTRS",
}


def _libpq_environment(settings: Settings) -> dict[str, str]:
    """The database URL as libpq's environment for pg_dump and pg_restore: never on their
    command line, where ``ps`` would show its password to every user of the host."""
    assert settings.database_url is not None
    url = settings.database_url.get_secret_value().replace("postgresql+psycopg://",
                                                           "postgresql://", 1)
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("PG")}
    for key, value in conninfo_to_dict(url).items():
        if key not in _LIBPQ_ENVIRONMENT:
            raise BackupError(f"the database URL's parameter {key!r} cannot be passed to "
                              "pg_dump")
        environment[_LIBPQ_ENVIRONMENT[key]] = str(value)
    return environment


def _dump(settings: Settings, target: Path) -> None:
    if settings.database_url is None:  # SQLite's online backup: consistent, the WAL in it
        source = sqlite3.connect(settings.sqlite_file)
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        return
    _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", "--file",
          str(target)], "pg_dump", _libpq_environment(settings))


def _load(settings: Settings, folder: Path) -> None:
    if settings.database_url is None:
        staged = settings.sqlite_file.with_name(settings.sqlite_file.name + ".restoring")
        shutil.copyfile(folder / "sellervault.db", staged)
        os.chmod(staged, 0o600)
        for suffix in ("-wal", "-shm", "-journal"):
            Path(str(settings.sqlite_file) + suffix).unlink(missing_ok=True)
        staged.replace(settings.sqlite_file)  # (whole or not at all)
        return
    environment = _libpq_environment(settings)
    if "PGDATABASE" not in environment:
        raise BackupError("the database URL names no database to restore into")
    _run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--no-privileges",
          "--single-transaction", "--dbname", environment["PGDATABASE"],
          str(folder / "database.dump")], "pg_restore", environment)


def _run(command: list[str], tool: str, environment: dict[str, str]) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600,
                              check=False, env=environment)
    except FileNotFoundError:
        raise BackupError(f"{tool} is not installed (PostgreSQL's client tools)") from None
    if done.returncode != 0:  # (its message names tables and options, not the URL)
        raise BackupError(f"{tool} failed: {done.stderr.strip().splitlines()[-1:]}")
