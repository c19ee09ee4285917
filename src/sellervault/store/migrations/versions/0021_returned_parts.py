"""returns before deletion

``deletion_requests`` gains the recipient's public key (and its thumbprint) and the count
of orders returned; ``returned_parts`` holds the returned file, one JWE encrypted to the
recipient per part (``deletion.returns``).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0021'
down_revision: str | Sequence[str] | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('deletion_requests', sa.Column('return_key', sa.Text(), nullable=True))
    op.add_column('deletion_requests',
                  sa.Column('return_key_id', sa.String(length=64), nullable=True))
    op.add_column('deletion_requests', sa.Column('returned', sa.Integer(), nullable=True))
    op.create_table(
        'returned_parts',
        sa.Column('request_id', sa.String(length=32), nullable=False),
        sa.Column('part', sa.Integer(), nullable=False),
        sa.Column('orders', sa.Integer(), nullable=False),
        sa.Column('last_order_id', sa.String(length=32), nullable=True),
        sa.Column('jwe', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['request_id'], ['deletion_requests.id'],
                                name=op.f('fk_returned_parts_request_id_deletion_requests')),
        sa.PrimaryKeyConstraint('request_id', 'part', name=op.f('pk_returned_parts')),
    )


def downgrade() -> None:
    op.drop_table('returned_parts')
    with op.batch_alter_table('deletion_requests') as batch:
        batch.drop_column('returned')
        batch.drop_column('return_key_id')
        batch.drop_column('return_key')
