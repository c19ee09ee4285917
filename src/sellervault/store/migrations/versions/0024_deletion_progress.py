"""deletion progress

``deletion_requests.rows_deleted``: how many of the scope's orders an execution has deleted
so far (a large scope is deleted by the ``deletion-executions`` job, in the background).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0024'
down_revision: str | Sequence[str] | None = '0023'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('deletion_requests', sa.Column('rows_deleted', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deletion_requests') as batch:
        batch.drop_column('rows_deleted')
