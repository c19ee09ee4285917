"""failures since the last success

``accounts.failures_since_success``: failed sign-ins since the account's last successful one,
never forgotten with time (``accounts.failed_logins`` is, 12 hours after the last failure):
ten of them disable the account (PARAMETERS.md, "10 failures without a success"), so a
guesser who waits out the twelve hours still gets nine guesses at an account, not nine every
twelve hours. Existing accounts start from their current count.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | Sequence[str] | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('accounts') as batch:
        batch.add_column(sa.Column('failures_since_success', sa.Integer(), nullable=False,
                                   server_default='0'))
    op.execute('UPDATE accounts SET failures_since_success = failed_logins')


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's own DROP COLUMN (3.35+), not a batch: a batch copies the table and drops
        # the old one, which the rows referencing accounts (recovery codes, password history)
        # forbid while foreign keys are enforced.
        op.execute("ALTER TABLE accounts DROP COLUMN failures_since_success")
    else:
        op.drop_column('accounts', 'failures_since_success')
