"""kill switches

``kill_switches``: one row per switch an operator has set (``access.killswitches``): every
PII reveal and search, one tenant, or one account, stopped until the row is deleted.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'kill_switches',
        sa.Column('scope', sa.String(length=16), nullable=False),
        sa.Column('subject', sa.String(length=64), nullable=False),
        sa.Column('set_by', sa.String(length=32), nullable=True),
        sa.Column('set_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('scope', 'subject'),
    )


def downgrade() -> None:
    op.drop_table('kill_switches')
