"""job runs: one row per periodic job, shared by every server process

``serve`` runs periodic jobs (``sellervault.jobs``); with several processes on one database,
each due run is claimed by one conditional UPDATE of its job's row (the next due time moves
on), and the row says whether a run is in progress and how the last one ended. A job's row is
made the first time a server schedules it. The downgrade drops the table: the runs themselves
are in the security log (``jobs:run`` events), which it leaves as it is.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('job_runs',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('next_due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=True),
    sa.Column('running_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_outcome', sa.String(length=16), nullable=True),
    sa.Column('last_count', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_job_runs'))
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('job_runs')
