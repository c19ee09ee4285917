"""audit reviews

``audit_reviews``: who reviewed the security log up to which event, and when (the policy's
review every 14 days; ``audit.reviews``). Numbered one after another; the number is the
primary key, so two reviews recorded at once cannot both take the next one.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | Sequence[str] | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'audit_reviews',
        sa.Column('number', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('reviewer_id', sa.String(length=32), nullable=False),
        sa.Column('up_to_seq', sa.BigInteger(), nullable=False),
        sa.Column('reviewed_at', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('number', name=op.f('pk_audit_reviews')),
    )


def downgrade() -> None:
    op.drop_table('audit_reviews')
