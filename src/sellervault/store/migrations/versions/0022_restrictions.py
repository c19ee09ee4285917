"""restrictions of processing

``restrictions``: buyers whose processing is restricted (a data subject's right), by the
tenant's blind-index digest of their email; at most one active per buyer
(``records.restrictions``).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0022'
down_revision: str | Sequence[str] | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'restrictions',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('buyer_digest', sa.LargeBinary(length=32), nullable=False),
        sa.Column('buyer', sa.String(length=40), nullable=False),
        sa.Column('reason', sa.String(length=500), nullable=False),
        sa.Column('restricted_by', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('lifted_by', sa.String(length=32), nullable=True),
        sa.Column('lifted_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_restrictions')),
    )
    op.create_index('uq_restrictions_active', 'restrictions', ['tenant_id', 'buyer_digest'],
                    unique=True, sqlite_where=sa.text('lifted_at IS NULL'),
                    postgresql_where=sa.text('lifted_at IS NULL'))


def downgrade() -> None:
    op.drop_index('uq_restrictions_active', table_name='restrictions')
    op.drop_table('restrictions')
