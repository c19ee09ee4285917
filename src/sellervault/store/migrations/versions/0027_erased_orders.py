"""orders deleted on request stay deleted

``erased_orders``: the tenant's blind-index digest of every order a deletion request of
scope order or buyer deleted, which ingest withholds when a marketplace re-sync sends it
again (``records.erasure``).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0027'
down_revision: str | Sequence[str] | None = '0026'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'erased_orders',
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('order_digest', sa.LargeBinary(length=32), nullable=False),
        sa.Column('erased_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('tenant_id', 'order_digest', name=op.f('pk_erased_orders')),
    )


def downgrade() -> None:
    op.drop_table('erased_orders')
