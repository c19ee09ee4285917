"""alert notifications

``alert_notifications``: the outbox of alert notifications (``notifications``), one row per
alert and configured channel, enqueued in the alert's transaction and delivered by the
``alert-notifications`` job; ``dead`` rows are the dead letter list. The downgrade drops the
table: each attempt is in the security log (``notifications:deliver``), which it leaves as is.

Revision ID: 0016
Revises: 0015 (re-chained onto 0015 at merge)
Create Date: 2026-12-06

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | Sequence[str] | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'alert_notifications',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('alert_id', sa.String(length=32), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('claim_id', sa.String(length=32), nullable=True),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_reason', sa.String(length=32), nullable=True),
        sa.Column('last_status', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'],
                                name=op.f('fk_alert_notifications_alert_id_alerts')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_notifications')),
        sa.UniqueConstraint('alert_id', 'channel',
                            name='uq_alert_notifications_alert_channel'),
    )
    op.create_index('ix_alert_notifications_due', 'alert_notifications',
                    ['status', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_alert_notifications_due', table_name='alert_notifications')
    op.drop_table('alert_notifications')
