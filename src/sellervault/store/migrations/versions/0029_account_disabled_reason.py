"""why a rule disabled an account

``accounts.disabled_reason``: the rule that disabled the account (a canary touched, an
unusual retrieval volume, 90 days unused, an end date passed), NULL when a person disabled
it or it is not disabled. An account a canary locked is re-enabled by a security officer
only (``accounts.lifecycle.enable``). Accounts disabled before this revision have none.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0029'
down_revision: str | Sequence[str] | None = '0028'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('accounts', sa.Column('disabled_reason', sa.String(length=32), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's own DROP COLUMN (3.35+), not a batch: a batch copies the table and drops
        # the old one, which the rows referencing accounts forbid while foreign keys are
        # enforced (as in 0011).
        op.execute("ALTER TABLE accounts DROP COLUMN disabled_reason")
    else:
        op.drop_column('accounts', 'disabled_reason')
