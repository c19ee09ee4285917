"""order lifetimes and legal holds

``orders`` gains when its buyer PII goes (``pii_expires_at``: 30 days after delivery, or
shipment), when the order goes (``expires_at``: 18 months after purchase), when retention
erased its PII (``pii_removed_at``) and a legal hold (``held_until``); existing orders get
theirs computed from what they hold (``records.lifetimes``). ``legal_holds``: who held an
order, why, until when.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05

"""
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sellervault.records import lifetimes
from sellervault.store.types import UTCDateTime

revision: str = '0020'
down_revision: str | Sequence[str] | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000


def upgrade() -> None:
    op.add_column('orders', sa.Column('pii_expires_at', sa.DateTime(timezone=True),
                                      nullable=True))
    op.add_column('orders', sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('orders', sa.Column('pii_removed_at', sa.DateTime(timezone=True),
                                      nullable=True))
    op.add_column('orders', sa.Column('held_until', sa.DateTime(timezone=True), nullable=True))
    _backfill()
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.alter_column('expires_at', existing_type=sa.DateTime(timezone=True),
                              nullable=False)
    op.create_index('ix_orders_pii_expires_at', 'orders', ['pii_expires_at'], unique=False)
    op.create_index('ix_orders_expires_at', 'orders', ['expires_at'], unique=False)
    op.create_table(
        'legal_holds',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('amazon_order_id', sa.String(length=64), nullable=False),
        sa.Column('reason', sa.String(length=500), nullable=False),
        sa.Column('held_by', sa.String(length=32), nullable=False),
        sa.Column('held_until', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('released_by', sa.String(length=32), nullable=True),
        sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_legal_holds')),
    )
    op.create_index('ix_legal_holds_order', 'legal_holds', ['tenant_id', 'amazon_order_id'],
                    unique=False)


def _backfill() -> None:
    orders = sa.table('orders', sa.column('id', sa.String()),
                      sa.column('attributes', sa.Text()),
                      sa.column('purchase_date', UTCDateTime()),
                      sa.column('pii_expires_at', UTCDateTime()),
                      sa.column('expires_at', UTCDateTime()))
    bind = op.get_bind()
    last = ""
    while True:
        rows = bind.execute(sa.select(orders.c.id, orders.c.attributes, orders.c.purchase_date)
                            .where(orders.c.id > last).order_by(orders.c.id).limit(BATCH)).all()
        if not rows:
            return
        for order_id, attributes, purchased in rows:
            bind.execute(orders.update().where(orders.c.id == order_id).values(
                pii_expires_at=lifetimes.pii_expiry(json.loads(attributes)),
                expires_at=lifetimes.order_expiry(purchased)))
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_index('ix_legal_holds_order', table_name='legal_holds')
    op.drop_table('legal_holds')
    op.drop_index('ix_orders_expires_at', table_name='orders')
    op.drop_index('ix_orders_pii_expires_at', table_name='orders')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('held_until')
        batch_op.drop_column('pii_removed_at')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('pii_expires_at')
