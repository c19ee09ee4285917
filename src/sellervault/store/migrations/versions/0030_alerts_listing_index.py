"""alerts listed newest first without a sort of the whole table

``ix_alerts_created_at_id`` on ``alerts (created_at, id)``: the listing's order and its
cursor (``monitoring.alerts.list_alerts``), so that paging through a flood of alerts reads a
page, not every alert.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-06

"""
from collections.abc import Sequence

from alembic import op

revision: str = '0030'
down_revision: str | Sequence[str] | None = '0029'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_alerts_created_at_id', 'alerts', ['created_at', 'id'])


def downgrade() -> None:
    op.drop_index('ix_alerts_created_at_id', table_name='alerts')
