"""Password history (PARAMETERS.md): a new password may not be one of the account's last 10,
the current one and the nine before it.

The earlier ones are kept as the Argon2id hashes they were stored as (never anything a
guesser could test faster than the current hash), and only the nine most recent: a password
changed eleven times ago is forgotten. Checking a candidate costs one Argon2 verification
per kept hash (at most ten, a fraction of a second): done outside any transaction, by the
person changing their own password, after their current password and code were proven.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from sellervault.accounts.models import PasswordHistoryRow
from sellervault.accounts.passwords import verify_password

REMEMBERED = 10
"""How many passwords a new one is compared with, the current one included."""
_EARLIER_KEPT = REMEMBERED - 1


def earlier_hashes(session: Session, account_id: str) -> list[str]:
    """The hashes of the passwords ``account_id`` had before its current one, newest first."""
    return list(session.scalars(
        select(PasswordHistoryRow.password_hash)
        .where(PasswordHistoryRow.account_id == account_id)
        .order_by(PasswordHistoryRow.id.desc()).limit(_EARLIER_KEPT)))


def is_reused(hashes: Sequence[str | None], password: str) -> bool:
    """Whether ``password`` is the one behind any of ``hashes`` (each is verified: a match
    found early does not stop the others, so the time does not say which one it was)."""
    matches = [verify_password(password_hash, password)
               for password_hash in hashes if password_hash is not None]
    return any(matches)


def remember(session: Session, account_id: str, replaced_hash: str | None,
             now: datetime) -> None:
    """Keep the hash of the password being replaced, and forget what is older than the
    last nine, in the caller's transaction (the one that replaces it)."""
    if replaced_hash is None:
        return
    session.add(PasswordHistoryRow(account_id=account_id, password_hash=replaced_hash,
                                   replaced_at=now))
    session.flush()
    kept = (select(PasswordHistoryRow.id).where(PasswordHistoryRow.account_id == account_id)
            .order_by(PasswordHistoryRow.id.desc()).limit(_EARLIER_KEPT))
    session.execute(delete(PasswordHistoryRow)
                    .where(PasswordHistoryRow.account_id == account_id,
                           PasswordHistoryRow.id.not_in(kept))
                    .execution_options(synchronize_session=False))
