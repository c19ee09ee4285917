"""enrolment tokens and recovery codes

``enrolments``: single-use tokens (keyed hashes) with which a person sets their own password
and authenticator, 72 hours to use; ``recovery_codes``: single-use codes (keyed hashes) usable
in place of a TOTP code (``accounts.enrolment``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'enrolments',
        sa.Column('token_hash', sa.LargeBinary(length=32), nullable=False),
        sa.Column('account_id', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id']),
        sa.PrimaryKeyConstraint('token_hash'),
    )
    op.create_index('ix_enrolments_account_id', 'enrolments', ['account_id'])
    op.create_table(
        'recovery_codes',
        sa.Column('code_hash', sa.LargeBinary(length=32), nullable=False),
        sa.Column('account_id', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id']),
        sa.PrimaryKeyConstraint('code_hash'),
    )
    op.create_index('ix_recovery_codes_account_id', 'recovery_codes', ['account_id'])


def downgrade() -> None:
    op.drop_index('ix_recovery_codes_account_id', 'recovery_codes')
    op.drop_table('recovery_codes')
    op.drop_index('ix_enrolments_account_id', 'enrolments')
    op.drop_table('enrolments')
