"""sellervault.crypto.provider: the local root keyring, the only code that touches a root key.

The specification, as tests:

- ``create`` writes a new keyring owner-only (0600) and never overwrites an existing one.
- A keyring file readable or writable by group or others, or owned by someone else, is
  refused; so are missing and malformed files.
- A passphrase-sealed keyring opens only with its passphrase: a wrong one, a missing one,
  or a passphrase given for an unsealed file are refused, and no error repeats the
  passphrase. A sealed file holds neither the root key in any encoding nor the passphrase,
  and stays sealed when rewritten.
- ``wrap`` / ``unwrap`` round-trip a key bound to a context and to the root key version.
- ``add_version`` makes a new active version while older wrapped keys still unwrap;
  ``retire_versions_before`` removes old versions (their wrapped keys stop unwrapping) and
  refuses to remove the active one.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from sellervault.crypto.aead import new_key
from sellervault.crypto.errors import DecryptionError, KeyFileError
from sellervault.crypto.provider import LocalKeyProvider

PASSPHRASE = "plum-orchard-7-lanterns"
WRONG_PASSPHRASE = "quince-harbour-9-kites"
CONTEXT = b'["tenant-key","acme","kek",1]'


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "data" / "root-key.json"


@pytest.fixture
def provider(key_file: Path) -> LocalKeyProvider:
    return LocalKeyProvider.create(key_file)


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LocalKeyProvider]:
    """One passphrase-sealed keyring for the module (each scrypt run costs ~0.2 s)."""
    path = tmp_path_factory.mktemp("sealed") / "root-key.json"
    return path, LocalKeyProvider.create(path, PASSPHRASE)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def encodings(secret: bytes) -> list[bytes]:
    """The ways a key could plausibly appear in a file."""
    forms = [secret, secret.hex().encode(), secret.hex().upper().encode(),
             base64.b64encode(secret), base64.urlsafe_b64encode(secret),
             base64.b32encode(secret), base64.b85encode(secret)]
    return forms + [form.rstrip(b"=") for form in forms]


def root_key(provider: LocalKeyProvider, version: int) -> bytes:
    """The raw root key, read from the provider's private state (tests only)."""
    return provider._raw[version]


# -- creating and opening the file -----------------------------------------------------------

def test_create_writes_an_owner_only_file(provider: LocalKeyProvider, key_file: Path) -> None:
    assert mode(key_file) == 0o600
    assert mode(key_file.parent) == 0o700
    assert provider.active_version() == 1
    assert not provider.sealed


def test_create_refuses_to_overwrite(provider: LocalKeyProvider, key_file: Path) -> None:
    before = key_file.read_bytes()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        LocalKeyProvider.create(key_file)
    assert key_file.read_bytes() == before


def test_each_keyring_has_its_own_root_key(tmp_path: Path) -> None:
    first = LocalKeyProvider.create(tmp_path / "one.json")
    second = LocalKeyProvider.create(tmp_path / "two.json")
    assert root_key(first, 1) != root_key(second, 1)
    version, wrapped = first.wrap(new_key(), CONTEXT)
    with pytest.raises(DecryptionError):
        second.unwrap(version, wrapped, CONTEXT)


@pytest.mark.parametrize("loose", [0o640, 0o644, 0o604, 0o660, 0o606, 0o666, 0o700 | 0o070])
def test_group_or_other_permissions_are_refused(provider: LocalKeyProvider, key_file: Path,
                                                loose: int) -> None:
    key_file.chmod(loose)
    with pytest.raises(KeyFileError, match="chmod 600"):
        LocalKeyProvider(key_file)


def test_owner_only_permissions_are_accepted(provider: LocalKeyProvider, key_file: Path) -> None:
    key_file.chmod(0o400)
    assert LocalKeyProvider(key_file).active_version() == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_file_owned_by_another_user_is_refused(provider: LocalKeyProvider,
                                                 key_file: Path) -> None:
    os.chown(key_file, 65534, -1)
    with pytest.raises(KeyFileError, match="not owned"):
        LocalKeyProvider(key_file)


def test_a_missing_file_is_refused(key_file: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        LocalKeyProvider(key_file)


@pytest.mark.parametrize("content", [
    b"not json",
    b"{}",
    json.dumps({"format": "something-else", "version": 1, "sealed": False}).encode(),
    json.dumps({"format": "sellervault-root-keyring", "version": 1, "sealed": False,
                "keyring": {"active": 1, "keys": {"1": base64.b64encode(b"short").decode()}}
                }).encode(),
    json.dumps({"format": "sellervault-root-keyring", "version": 1, "sealed": False,
                "keyring": {"active": 2, "keys": {"1": base64.b64encode(bytes(32)).decode()}}
                }).encode(),
])
def test_a_malformed_file_is_refused(key_file: Path, content: bytes) -> None:
    key_file.parent.mkdir(mode=0o700)
    key_file.write_bytes(content)
    key_file.chmod(0o600)
    with pytest.raises(KeyFileError, match="malformed"):
        LocalKeyProvider(key_file)


def test_repr_shows_no_key(provider: LocalKeyProvider) -> None:
    shown = repr(provider)
    assert "redacted" in shown
    for form in encodings(root_key(provider, 1)):
        assert form.decode("latin-1") not in shown


# -- the passphrase-sealed keyring -----------------------------------------------------------

def test_sealed_keyring_opens_with_its_passphrase(
        sealed: tuple[Path, LocalKeyProvider]) -> None:
    path, created = sealed
    version, wrapped = created.wrap(b"k" * 32, CONTEXT)
    reopened = LocalKeyProvider(path, PASSPHRASE)
    assert reopened.sealed
    assert reopened.unwrap(version, wrapped, CONTEXT) == b"k" * 32
    assert mode(path) == 0o600


def test_sealed_keyring_refuses_a_wrong_passphrase_without_repeating_it(
        sealed: tuple[Path, LocalKeyProvider]) -> None:
    path, _ = sealed
    with pytest.raises(KeyFileError) as caught:
        LocalKeyProvider(path, WRONG_PASSPHRASE)
    error: BaseException | None = caught.value
    assert "wrong" in str(caught.value).lower()
    while error is not None:  # nor in anything chained to it
        for shown in (str(error), repr(error), *map(str, error.args)):
            assert WRONG_PASSPHRASE not in shown
            assert PASSPHRASE not in shown
        error = error.__cause__ or error.__context__


def test_sealed_keyring_refuses_to_open_without_a_passphrase(
        sealed: tuple[Path, LocalKeyProvider]) -> None:
    path, _ = sealed
    with pytest.raises(KeyFileError, match="SELLERVAULT_ROOT_KEY_PASSPHRASE"):
        LocalKeyProvider(path)


def test_unsealed_keyring_refuses_a_passphrase(provider: LocalKeyProvider,
                                               key_file: Path) -> None:
    with pytest.raises(KeyFileError, match="not sealed"):
        LocalKeyProvider(key_file, PASSPHRASE)


def test_sealed_file_holds_no_root_key_and_no_passphrase(
        sealed: tuple[Path, LocalKeyProvider]) -> None:
    path, created = sealed
    content = path.read_bytes()
    document = json.loads(content)
    assert document["sealed"] is True
    assert "keyring" not in document
    assert document["kdf"]["name"] == "scrypt"
    assert document["kdf"]["n"] >= 2**16 and document["kdf"]["r"] >= 8
    for form in encodings(root_key(created, 1)):
        assert form not in content
    assert PASSPHRASE.encode() not in content


def test_unsealed_file_does_hold_the_root_key(provider: LocalKeyProvider,
                                              key_file: Path) -> None:
    """The control for the test above: the encoding scan does find a key that is there."""
    content = key_file.read_bytes()
    assert any(form in content for form in encodings(root_key(provider, 1)))


def test_sealed_keyring_stays_sealed_when_a_version_is_added(tmp_path: Path) -> None:
    path = tmp_path / "root-key.json"
    created = LocalKeyProvider.create(path, PASSPHRASE)
    old = created.wrap(b"o" * 32, CONTEXT)
    assert created.add_version() == 2
    content = path.read_bytes()
    assert json.loads(content)["sealed"] is True
    for version in (1, 2):
        for form in encodings(root_key(created, version)):
            assert form not in content
    with pytest.raises(KeyFileError, match="SELLERVAULT_ROOT_KEY_PASSPHRASE"):
        LocalKeyProvider(path)
    reopened = LocalKeyProvider(path, PASSPHRASE)
    assert reopened.active_version() == 2
    assert reopened.unwrap(*old, CONTEXT) == b"o" * 32


# -- wrapping --------------------------------------------------------------------------------

def test_wrap_unwrap_round_trip(provider: LocalKeyProvider, key_file: Path) -> None:
    key = new_key()
    version, wrapped = provider.wrap(key, CONTEXT)
    assert version == provider.active_version() == 1
    assert key not in wrapped
    assert provider.unwrap(version, wrapped, CONTEXT) == key
    assert LocalKeyProvider(key_file).unwrap(version, wrapped, CONTEXT) == key


def test_unwrap_is_bound_to_the_context(provider: LocalKeyProvider) -> None:
    version, wrapped = provider.wrap(new_key(), CONTEXT)
    for other in (b'["tenant-key","globex","kek",1]', b'["tenant-key","acme","index",1]',
                  b'["tenant-key","acme","kek",2]', b""):
        with pytest.raises(DecryptionError):
            provider.unwrap(version, wrapped, other)


def test_unwrap_is_bound_to_the_root_version(provider: LocalKeyProvider) -> None:
    version, wrapped = provider.wrap(new_key(), CONTEXT)
    provider.add_version()
    with pytest.raises(DecryptionError):
        provider.unwrap(version + 1, wrapped, CONTEXT)
    with pytest.raises(DecryptionError):
        provider.unwrap(99, wrapped, CONTEXT)


def test_tampered_wrapped_key_does_not_unwrap(provider: LocalKeyProvider) -> None:
    version, wrapped = provider.wrap(new_key(), CONTEXT)
    tampered = wrapped[:-1] + bytes([wrapped[-1] ^ 0x80])
    with pytest.raises(DecryptionError):
        provider.unwrap(version, tampered, CONTEXT)


# -- versions and retirement -----------------------------------------------------------------

def test_add_version_keeps_old_versions_for_unwrapping(provider: LocalKeyProvider,
                                                       key_file: Path) -> None:
    key = new_key()
    old_version, old_wrapped = provider.wrap(key, CONTEXT)
    assert provider.add_version() == 2
    assert provider.active_version() == 2
    assert mode(key_file) == 0o600
    assert not key_file.with_name(key_file.name + ".tmp").exists()
    new_version, new_wrapped = provider.wrap(key, CONTEXT)
    assert new_version == 2
    assert root_key(provider, 1) != root_key(provider, 2)
    for opener in (provider, LocalKeyProvider(key_file)):
        assert opener.active_version() == 2
        assert opener.unwrap(old_version, old_wrapped, CONTEXT) == key
        assert opener.unwrap(new_version, new_wrapped, CONTEXT) == key


def test_retired_versions_no_longer_unwrap(provider: LocalKeyProvider, key_file: Path) -> None:
    key = new_key()
    old = provider.wrap(key, CONTEXT)
    provider.add_version()
    new = provider.wrap(key, CONTEXT)
    assert provider.unwrap(*old, CONTEXT) == key  # still usable until retired
    provider.retire_versions_before(2)
    for opener in (provider, LocalKeyProvider(key_file)):
        with pytest.raises(DecryptionError):
            opener.unwrap(*old, CONTEXT)
        assert opener.unwrap(*new, CONTEXT) == key
        assert opener.active_version() == 2
    assert "1" not in json.loads(key_file.read_bytes())["keyring"]["keys"]
    assert mode(key_file) == 0o600


def test_retiring_versions_below_the_oldest_changes_nothing(provider: LocalKeyProvider,
                                                            key_file: Path) -> None:
    wrapped = provider.wrap(new_key(), CONTEXT)
    provider.retire_versions_before(1)
    assert LocalKeyProvider(key_file).unwrap(*wrapped, CONTEXT) == provider.unwrap(
        *wrapped, CONTEXT)


@pytest.mark.parametrize("too_far", [2, 3, 100])
def test_the_active_version_is_never_retired(provider: LocalKeyProvider, key_file: Path,
                                             too_far: int) -> None:
    """Retiring the active version would leave a keyring without keys: every tenant key,
    and so every order, would be lost. It is refused before the file is touched."""
    key = new_key()
    wrapped = provider.wrap(key, CONTEXT)
    before = key_file.read_bytes()
    with pytest.raises(ValueError, match="active"):
        provider.retire_versions_before(too_far)
    assert key_file.read_bytes() == before
    assert LocalKeyProvider(key_file).unwrap(*wrapped, CONTEXT) == key
    assert provider.unwrap(*wrapped, CONTEXT) == key
