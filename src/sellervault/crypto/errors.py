"""Crypto errors: one opaque error per failure class, never carrying key or plaintext material."""

from sellervault.audit.events import Reason


class CryptoError(Exception):
    """Base class for every error raised by sellervault.crypto."""


class DecryptionError(CryptoError):
    """A ciphertext failed authentication: wrong key, wrong associated data, or tampered bytes.

    Deliberately carries no detail: telling an attacker *which* check failed helps them.
    """

    def __init__(self) -> None:
        super().__init__("decryption failed")


class KeyFileError(CryptoError):
    """The root key file is missing, malformed, or too widely readable."""


class TenantKeysBusyError(Exception):
    """A tenant's keys are held by a rotation for longer than an ingest waits: the ingest is
    refused (503, try again) rather than hold a worker thread for the whole rotation. Not a
    ``CryptoError``: nothing failed a check."""

    code = Reason.TENANT_KEYS_BUSY
    status = 503
    retry_after = 5

    def __init__(self) -> None:
        super().__init__("the tenant's keys are being rotated; try again shortly")


class TenantKeysDestroyedError(Exception):
    """Every key of the tenant was destroyed: its personal data is erased, and no key is made
    under its name again (an erased tenant id stays erased). Not a ``CryptoError``: nothing
    failed a check."""

    code = Reason.TENANT_ERASED
    status = 410

    def __init__(self) -> None:
        super().__init__("the tenant's keys have been destroyed: its personal data is erased")
