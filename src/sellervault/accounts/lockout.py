"""Account lockout (PARAMETERS.md): after 5 failed sign-ins a temporary lock, 60 s longer after
each further failure, at most 15 minutes; the count forgotten 12 hours after the last
failure; 10 failures without a success disable the account until an administrator
re-enables it.

Two counts, both in the account's row and both taken by the one UPDATE below:
``failed_logins`` (forgotten 12 hours after the last failure) sets the temporary lock;
``failures_since_success`` (forgotten only by a success or an administrator's re-enabling)
disables. Were the second the first, a guesser who waits out the 12 hours between rounds
would get nine guesses at an account every 12 hours for ever; with it, nine in all. The
attempt that is the tenth since a success also locks the account (for the longest lock)
while its password is checked, so no other attempt passes beside it.

A sign-in takes its attempt before the password is checked: one conditional UPDATE of the
account's row counts it as a failure (pessimistically) and, from the fifth, locks the
account, unless the row is locked already. Two server processes racing on one account
cannot both pass: under READ COMMITTED the second UPDATE waits for the first's row lock,
re-reads the row, finds it locked and changes nothing. So twenty guesses sent at once get
exactly five password checks (tested on PostgreSQL). A success then clears the count and the
lock. An attempt refused because the account is locked is not counted against it (each lock
costs a guesser its wait) and checks no password: a locked account is never an oracle for
its own password.

The state lives in the account's row, not in the shared counters: the check and the count
must be one atomic write, the row is already shared by every server process, and it
survives a restart of anything (Redis may be configured to keep nothing). The per-address
limit (``login_failures``) is in the shared counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, case, or_, select, update
from sqlalchemy.orm import Session

from sellervault.accounts.models import Account

LOCK_AFTER = 5
"""Failures that start a temporary lock."""
DISABLE_AFTER = 10
"""Failures without a success that disable the account (PARAMETERS: the floor)."""
LOCK_STEP = timedelta(seconds=60)
LOCK_MAX = timedelta(minutes=15)
FAILURES_FORGOTTEN = timedelta(hours=12)
"""How long after the last failure the count starts again from nothing."""

ACTIVE = "active"
DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Attempt:
    """A sign-in attempt taken on an account: counted as its ``failures``-th failure (in 12
    hours) and its ``since_success``-th since the last success, until it succeeds."""

    account_id: str
    failures: int
    since_success: int

    @property
    def locks(self) -> bool:
        return lock_for(self.failures) is not None

    @property
    def disables(self) -> bool:
        """Whether this attempt, if it fails, disables the account."""
        return self.since_success >= DISABLE_AFTER

    @property
    def lock(self) -> timedelta | None:
        """How long this attempt locks the account while it is checked (and after it, if it
        fails): the schedule's lock, or the longest for the attempt that would disable."""
        return LOCK_MAX if self.disables else lock_for(self.failures)


def lock_for(failures: int) -> timedelta | None:
    """How long the account is locked after its ``failures``-th failure: none before the
    fifth, then 60 s, 120 s, ... up to 15 minutes."""
    if failures < LOCK_AFTER:
        return None
    return min(LOCK_STEP * (failures - LOCK_AFTER + 1), LOCK_MAX)


def take_attempt(session: Session, email: str, now: datetime) -> Attempt | None:
    """Count an attempt on the active person ``email`` (normalised) that is not locked, and
    lock it if this is its fifth failure or more (or its tenth since a success); None when
    there is no such account (none at all, not a person, not active, past its end date, or
    locked). The caller
    commits before checking the password, so the count stands whatever happens to the
    check."""
    forgotten = now - FAILURES_FORGOTTEN
    taken = session.execute(
        update(Account)
        .where(Account.email == email, Account.kind == "person", Account.status == ACTIVE,
               or_(Account.locked_until.is_(None), Account.locked_until <= now),
               or_(Account.ends_at.is_(None), Account.ends_at > now))
        .values(failed_logins=case(
                    (or_(Account.last_failed_at.is_(None), Account.last_failed_at <= forgotten),
                     1),
                    else_=Account.failed_logins + 1),
                failures_since_success=Account.failures_since_success + 1,
                last_failed_at=now)
        .returning(Account.id, Account.failed_logins, Account.failures_since_success)
        .execution_options(synchronize_session=False)).first()
    if taken is None:
        return None
    attempt = Attempt(taken.id, taken.failed_logins, taken.failures_since_success)
    lock = attempt.lock
    if lock is not None:  # the row is still ours: nobody reads it unlocked in between
        session.execute(update(Account).where(Account.id == attempt.account_id)
                        .values(locked_until=now + lock)
                        .execution_options(synchronize_session=False))
    return attempt


def locked_account(session: Session, email: str, now: datetime) -> str | None:
    """The id of ``email``'s account if it is active and locked now (for the refusal's event
    only: the answer is the same as for a wrong password)."""
    found = session.execute(select(Account.id, Account.locked_until).where(
        Account.email == email, Account.kind == "person", Account.status == ACTIVE)).first()
    if found is None or found.locked_until is None or found.locked_until <= now:
        return None
    return str(found.id)


def succeeded(session: Session, account_id: str) -> None:
    """A sign-in proved the password and the code: both counts and any lock are cleared."""
    session.execute(update(Account).where(Account.id == account_id)
                    .values(failed_logins=0, failures_since_success=0, locked_until=None,
                            last_failed_at=None)
                    .execution_options(synchronize_session=False))


def disable(session: Session, account_id: str) -> bool:
    """Disable an account that failed ``DISABLE_AFTER`` times; whether it was active."""
    changed = cast(CursorResult[Any], session.execute(
        update(Account).where(Account.id == account_id, Account.status == ACTIVE)
        .values(status=DISABLED).execution_options(synchronize_session=False)))
    return changed.rowcount == 1


def forgive(session: Session, account_id: str) -> None:
    """What re-enabling an account clears: both counts and its lock (an account re-enabled
    after ten failures starts again from nothing, as after a success)."""
    succeeded(session, account_id)
