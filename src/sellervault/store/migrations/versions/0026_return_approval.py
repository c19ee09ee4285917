"""a second officer approves a return

``deletion_requests.return_approved_by`` / ``return_approved_at``: a request that returns
data is executed only once a security officer other than the one who filed it approved it
(and the recipient key it names).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0026'
down_revision: str | Sequence[str] | None = '0025'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('deletion_requests',
                  sa.Column('return_approved_by', sa.String(length=32), nullable=True))
    op.add_column('deletion_requests',
                  sa.Column('return_approved_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deletion_requests') as batch:
        batch.drop_column('return_approved_at')
        batch.drop_column('return_approved_by')
