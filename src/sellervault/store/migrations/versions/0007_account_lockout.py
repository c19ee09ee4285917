"""account lockout

``accounts.locked_until`` (a temporary lock after five failed sign-ins, longer after each)
and ``accounts.last_failed_at`` (the failure count is forgotten twelve hours after the last
failure): the lockout of ``accounts.lockout``. In the account's row so that taking an attempt
is one conditional UPDATE, which no two server processes can both pass. Existing accounts
start unlocked with their current count.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('accounts') as batch:
        batch.add_column(sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('last_failed_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('accounts') as batch:
        batch.drop_column('last_failed_at')
        batch.drop_column('locked_until')
