"""Crypto errors: one opaque error per failure class, never carrying key or plaintext material."""


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
