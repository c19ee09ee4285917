"""password history

``password_history``: the Argon2id hashes of the passwords an account had before its current
one, the last nine kept, so that a new password is none of the last ten
(``accounts.password_history``). Starts empty: an account's current password is in
``accounts.password_hash`` already.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'password_history',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('account_id', sa.String(length=32), nullable=False),
        sa.Column('password_hash', sa.String(length=256), nullable=False),
        sa.Column('replaced_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_password_history_account_id', 'password_history', ['account_id'])


def downgrade() -> None:
    op.drop_index('ix_password_history_account_id', 'password_history')
    op.drop_table('password_history')
