"""Password age (PARAMETERS.md): a password is kept at least a day and at most 365 days.

The minimum stops a person from changing their password ten times in a row to get back to
the one they had (the history keeps the last ten): a second change within a day is refused,
unless the change is forced (the password expired, or the account must change it). The
maximum makes a password that may have leaked unnoticed stop working on its own: a sign-in
with an expired password is answered like one with a password that must be changed (403
``password_change_required``, the code not used up), and the person changes it with
``POST /api/v1/password`` (``sellervault password change``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

MIN_AGE = timedelta(days=1)
MAX_AGE = timedelta(days=365)


def expired(changed_at: datetime | None, now: datetime) -> bool:
    """Whether a password set at ``changed_at`` may no longer sign in (a password whose
    time is unknown counts as expired: the person sets a new one)."""
    return changed_at is None or changed_at + MAX_AGE <= now


def too_recent(changed_at: datetime | None, now: datetime) -> bool:
    """Whether a password set at ``changed_at`` is too young to be changed by its owner."""
    return changed_at is not None and now < changed_at + MIN_AGE
