"""The system keys account secrets are kept under: the pepper credentials are hashed with (a
session token, an API key, an enrolment token, a recovery code: random values, so a keyed
hash is enough, and a stolen table is useless without the key), and the key TOTP secrets are
encrypted under."""

from __future__ import annotations

import pyotp
from sqlalchemy.orm import Session

from sellervault.crypto.aead import Cipher
from sellervault.crypto.credentials import constant_time_equal
from sellervault.runtime import Runtime

CREDENTIAL_PEPPER = "credential-pepper"
ACCOUNT_SECRETS = "account-secrets"
TOTP_STEP_SECONDS = 30


def credential_pepper(rt: Runtime, session: Session) -> bytes:
    return rt.keyring.system_key(session, CREDENTIAL_PEPPER)


def totp_cipher(rt: Runtime, session: Session) -> Cipher:
    return Cipher(rt.keyring.system_key(session, ACCOUNT_SECRETS))


def totp_step(rt: Runtime, secret: bytes | None, code: str, last_step: int) -> int | None:
    """The time step ``code`` is valid for (now +-1 step), if it is later than ``last_step``
    (each step is used once)."""
    if secret is None or not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret.decode())
    current = int(rt.clock.timestamp()) // TOTP_STEP_SECONDS
    for step in (current - 1, current, current + 1):
        expected = totp.at(step * TOTP_STEP_SECONDS)
        if constant_time_equal(expected.encode(), code.encode()) and step > last_step:
            return step
    return None
