"""a tombstone lasts as long as its order would have

``erased_orders.expires_at``: when the deleted order would have been removed (18 months
after purchase); the retention run drops tombstones past it. Tombstones written before this
revision get their erasure time plus 18 months (the longest their order can have had left),
so none goes early.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sellervault.records import lifetimes
from sellervault.store.types import UTCDateTime

revision: str = '0028'
down_revision: str | Sequence[str] | None = '0027'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('erased_orders') as batch:
        batch.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    erased = sa.table('erased_orders', sa.column('tenant_id', sa.String()),
                      sa.column('order_digest', sa.LargeBinary()),
                      sa.column('erased_at', UTCDateTime()),
                      sa.column('expires_at', UTCDateTime()))
    connection = op.get_bind()
    for tenant_id, digest, erased_at in connection.execute(
            sa.select(erased.c.tenant_id, erased.c.order_digest, erased.c.erased_at)).all():
        connection.execute(erased.update().where(
            erased.c.tenant_id == tenant_id, erased.c.order_digest == digest).values(
            expires_at=lifetimes.order_expiry(erased_at)))
    with op.batch_alter_table('erased_orders') as batch:
        batch.alter_column('expires_at', existing_type=sa.DateTime(timezone=True),
                           nullable=False)
        batch.create_index(batch.f('ix_erased_orders_expires_at'), ['expires_at'])


def downgrade() -> None:
    with op.batch_alter_table('erased_orders') as batch:
        batch.drop_index(batch.f('ix_erased_orders_expires_at'))
        batch.drop_column('expires_at')
