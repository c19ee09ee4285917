"""Key providers: where the root key lives, and the only code that ever touches it.

The root key never leaves its provider. Callers hand the provider a key to wrap or unwrap
(as a cloud KMS would), so no API, log or error can carry root key material. The local
provider keeps a small keyring file in the data directory, owner-only, optionally sealed by a
passphrase through scrypt.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from sellervault.crypto.aead import Cipher, bind, new_key
from sellervault.crypto.errors import DecryptionError, KeyFileError

KEYRING_FORMAT = "sellervault-root-keyring"
SCRYPT_N = 2**16
SCRYPT_R = 8
SCRYPT_P = 1


class KeyProvider(Protocol):
    """What the key hierarchy needs from wherever the root key is kept."""

    name: str

    def active_version(self) -> int: ...

    def wrap(self, key: bytes, context: bytes) -> tuple[int, bytes]:
        """Wrap ``key`` under the active root key; returns (root version, wrapped bytes)."""
        ...

    def unwrap(self, version: int, wrapped: bytes, context: bytes) -> bytes: ...

    def add_version(self) -> int:
        """Create a new root key version and make it active; older ones stay for unwrapping."""
        ...

    def retire_versions_before(self, version: int) -> None: ...


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


def _check_owner_only(path: Path) -> None:
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path} is readable by group or others (mode {stat.S_IMODE(info.st_mode):o}); "
            "the root key file must be owner-only (chmod 600)"
        )
    if info.st_uid != os.getuid():
        raise KeyFileError(f"{path} is not owned by the user running SellerVault")


def _write_owner_only(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, never letting it exist with looser permissions."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _passphrase_key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


class LocalKeyProvider:
    """A root keyring in a local owner-only file, optionally sealed by a passphrase."""

    name = "local-file"

    def __init__(self, path: Path, passphrase: str | None = None) -> None:
        self._path = path
        self._passphrase = passphrase
        self._keys: dict[int, Cipher] = {}
        self._raw: dict[int, bytes] = {}
        self._active = 0
        self._load()

    def __repr__(self) -> str:
        return f"LocalKeyProvider(path={str(self._path)!r}, keys=<redacted>)"

    @property
    def sealed(self) -> bool:
        return self._passphrase is not None

    @classmethod
    def create(cls, path: Path, passphrase: str | None = None) -> LocalKeyProvider:
        """Create a new keyring with one fresh root key; refuses to overwrite an existing one."""
        if path.exists():
            raise KeyFileError(f"{path} already exists; refusing to overwrite a root key")
        _write_owner_only(path, _serialize({1: new_key()}, 1, passphrase))
        return cls(path, passphrase)

    def _load(self) -> None:
        if not self._path.exists():
            raise KeyFileError(f"root key file {self._path} does not exist; run `sellervault init`")
        _check_owner_only(self._path)
        try:
            document = json.loads(self._path.read_bytes())
            keys, active = _deserialize(document, self._passphrase)
        except DecryptionError:
            raise KeyFileError(
                "the root key file could not be unsealed: wrong SELLERVAULT_ROOT_KEY_PASSPHRASE"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(f"root key file {self._path} is malformed") from exc
        self._raw = keys
        self._keys = {version: Cipher(key) for version, key in keys.items()}
        self._active = active

    def active_version(self) -> int:
        return self._active

    def wrap(self, key: bytes, context: bytes) -> tuple[int, bytes]:
        version = self._active
        return version, self._keys[version].seal(key, bind("root-wrap", version) + context)

    def unwrap(self, version: int, wrapped: bytes, context: bytes) -> bytes:
        cipher = self._keys.get(version)
        if cipher is None:
            raise DecryptionError()
        return cipher.open(wrapped, bind("root-wrap", version) + context)

    def add_version(self) -> int:
        version = max(self._raw) + 1
        keys = {**self._raw, version: new_key()}
        _write_owner_only(self._path, _serialize(keys, version, self._passphrase))
        self._load()
        return version

    def retire_versions_before(self, version: int) -> None:
        if version > self._active:  # would drop the active key: checked before the file is written
            raise ValueError("refusing to retire the active root key version")
        keys = {v: k for v, k in self._raw.items() if v >= version}
        _write_owner_only(self._path, _serialize(keys, self._active, self._passphrase))
        self._load()


def _serialize(keys: dict[int, bytes], active: int, passphrase: str | None) -> bytes:
    inner = {"active": active, "keys": {str(v): _b64(k) for v, k in keys.items()}}
    document: dict[str, Any] = {"format": KEYRING_FORMAT, "version": 1}
    if passphrase is None:
        document["sealed"] = False
        document["keyring"] = inner
    else:
        salt = os.urandom(16)
        kek = _passphrase_key(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        document["sealed"] = True
        document["kdf"] = {"name": "scrypt", "salt": _b64(salt), "n": SCRYPT_N, "r": SCRYPT_R,
                           "p": SCRYPT_P}
        plaintext = json.dumps(inner).encode()
        document["ciphertext"] = _b64(Cipher(kek).seal(plaintext, bind(KEYRING_FORMAT, 1)))
    return json.dumps(document, indent=2).encode()


def _deserialize(document: dict[str, Any], passphrase: str | None) -> tuple[dict[int, bytes], int]:
    if document.get("format") != KEYRING_FORMAT or document.get("version") != 1:
        raise ValueError("not a SellerVault root keyring")
    if document["sealed"]:
        if passphrase is None:
            raise KeyFileError(
                "the root key file is sealed by a passphrase; set SELLERVAULT_ROOT_KEY_PASSPHRASE"
            )
        kdf = document["kdf"]
        if kdf["name"] != "scrypt":
            raise ValueError("unknown KDF")
        kek = _passphrase_key(passphrase, _unb64(kdf["salt"]), int(kdf["n"]), int(kdf["r"]),
                              int(kdf["p"]))
        inner = json.loads(Cipher(kek).open(_unb64(document["ciphertext"]),
                                            bind(KEYRING_FORMAT, 1)))
    else:
        if passphrase is not None:
            raise KeyFileError(
                "SELLERVAULT_ROOT_KEY_PASSPHRASE is set but the root key file is not sealed"
            )
        inner = document["keyring"]
    keys = {int(v): _unb64(k) for v, k in inner["keys"].items()}
    if any(len(k) != 32 for k in keys.values()) or int(inner["active"]) not in keys:
        raise ValueError("malformed keyring")
    return keys, int(inner["active"])
