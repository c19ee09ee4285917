"""erasures applied, by id

``erasures_applied``: the id of every erasure ledger entry this database has (written in the
erasure's own transaction), replacing the byte position of 0023, which two erasures
committing out of order could move past one not yet committed (``deletion.ledger``).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0025'
down_revision: str | Sequence[str] | None = '0024'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'erasures_applied',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_erasures_applied')),
    )
    op.drop_table('erasure_ledger')


def downgrade() -> None:
    ledger = op.create_table(
        'erasure_ledger',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('position', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_erasure_ledger')),
    )
    op.bulk_insert(ledger, [{'id': 1, 'position': 0}])
    op.drop_table('erasures_applied')
