"""signed checkpoints of the security log

``audit_checkpoints``: every 60 seconds a job signs the Merkle root of the log (RFC 6962)
with a key used for nothing else, chained to the checkpoint before; the same lines are
appended to a file that can live on other storage (``audit.checkpoints``).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | Sequence[str] | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'audit_checkpoints',
        sa.Column('number', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('tree_size', sa.BigInteger(), nullable=False),
        sa.Column('statement', sa.Text(), nullable=False),
        sa.Column('signature', sa.String(length=128), nullable=False),
        sa.Column('frontier', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('number', name=op.f('pk_audit_checkpoints')),
    )


def downgrade() -> None:
    op.drop_table('audit_checkpoints')
