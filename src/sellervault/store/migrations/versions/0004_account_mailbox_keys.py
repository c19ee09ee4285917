"""account mailbox keys

Emails were only trimmed and lower-cased, so lookalikes (a Cyrillic a in "pat.picker@", a
fullwidth address, "pat+x@") made second accounts for one person's mailbox, and generic names
spelled with lookalike letters passed the policy. ``accounts.mailbox_key`` holds each
person's mailbox up to lookalikes and +tags (``accounts.identity``; NULL for services), under
a unique index: the index, not the service's check before it inserts, keeps one account per
mailbox when two creations race.

Existing people get their key here, computed by the same function the service uses, and
their email is stored in the new normal form (NFKC, case-folded; unchanged for ASCII), since
login now looks that form up. Two existing accounts with one key are not resolved here:
choosing which person keeps the mailbox is an administrator's decision, so the migration
stops, changes nothing, and names the accounts (never their emails). An existing email that
is not one mailbox under the new rules (two "@", or an empty local part once its +tag is cut)
keys as its normalised self: still unique, and it keeps logging in.

Downgrade drops the column; emails stay normalised (the same text for ASCII).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sellervault.accounts import identity

# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACCOUNTS = sa.table('accounts', sa.column('id', sa.String), sa.column('kind', sa.String),
                    sa.column('email', sa.String), sa.column('mailbox_key', sa.String))


class MailboxCollisionError(RuntimeError):
    """Two existing accounts are one mailbox: an administrator must decide which stays."""


def _key(email: str) -> str:
    found = identity.mailbox(email)
    return found.key if found else identity.normalize_email(email)


def _backfill(connection: sa.Connection) -> None:
    people = connection.execute(
        sa.select(ACCOUNTS.c.id, ACCOUNTS.c.email)
        .where(ACCOUNTS.c.kind == 'person', ACCOUNTS.c.email.is_not(None))
        .order_by(ACCOUNTS.c.id)
    ).all()
    owners: dict[str, str] = {}
    for account_id, email in people:
        other = owners.setdefault(_key(email), account_id)
        if other != account_id:
            raise MailboxCollisionError(
                f'accounts {other} and {account_id} are the same mailbox (lookalike emails '
                'or +tags); keep one, change the other\'s email, then upgrade again')
    for account_id, email in people:
        connection.execute(sa.update(ACCOUNTS).where(ACCOUNTS.c.id == account_id).values(
            email=identity.normalize_email(email), mailbox_key=_key(email)))


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mailbox_key', sa.String(length=320), nullable=True))
    _backfill(op.get_bind())
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_accounts_mailbox_key'), ['mailbox_key'],
                              unique=True)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_mailbox_key'))
        batch_op.drop_column('mailbox_key')
