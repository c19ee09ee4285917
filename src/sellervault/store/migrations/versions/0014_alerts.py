"""alerts

``alerts``: what the detectors raise (``monitoring``), one per rule, subject and window.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | Sequence[str] | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'alerts',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('rule', sa.String(length=32), nullable=False),
        sa.Column('severity', sa.String(length=16), nullable=False),
        sa.Column('subject', sa.String(length=80), nullable=False),
        sa.Column('principal_id', sa.String(length=32), nullable=True),
        sa.Column('window_start', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('assigned_to', sa.String(length=32), nullable=True),
        sa.Column('updated_at', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
        sa.UniqueConstraint('rule', 'subject', 'window_start',
                            name='uq_alerts_rule_subject_window'),
    )


def downgrade() -> None:
    op.drop_table('alerts')
