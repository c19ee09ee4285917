"""erasure ledger position

``erasure_ledger``: one row, where the database stands in the erasure ledger file beside
the root key (``deletion.ledger``): a database restored from an older backup has the
erasures after it applied again at its first start.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0023'
down_revision: str | Sequence[str] | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    ledger = op.create_table(
        'erasure_ledger',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('position', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_erasure_ledger')),
    )
    op.bulk_insert(ledger, [{'id': 1, 'position': 0}])


def downgrade() -> None:
    op.drop_table('erasure_ledger')
