"""security events: no secondary indexes

The security log is appended on every request and read by sequence number (its primary key):
verification walks it in order and the audit API pages through it by ``seq``. The indexes on
``occurred_at``, ``action`` and ``actor_id`` served no query, yet every append (every
request) updated three more B-trees and wrote their pages at commit. Indexes come back with
the queries that need them; a time range maps to a ``seq`` range since both only grow.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

"""
from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXED = ('occurred_at', 'action', 'actor_id')


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        for column in INDEXED:
            batch_op.drop_index(f'ix_security_events_{column}')


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        for column in INDEXED:
            batch_op.create_index(f'ix_security_events_{column}', [column], unique=False)
