"""account lifecycle: end dates, per-account networks, API key expiry warnings

``accounts.ends_at``: when the account's access stops (a contractor's last day, a leaver's
offboarding); from then on it authenticates nothing, and the ``account-end-dates`` job
disables it. ``accounts.allowed_networks``: CIDRs the account may sign in and send requests
from, within the deployment's allowlist (NULL: the deployment's alone).
``api_keys.expiry_warned_at``: when the ``api-key-expiry`` job warned that the key expires
within 30 days (once per key).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | Sequence[str] | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('accounts') as batch:
        batch.add_column(sa.Column('ends_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('allowed_networks', sa.String(2000), nullable=True))
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('expiry_warned_at', sa.DateTime(timezone=True),
                                   nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's own DROP COLUMN, not a batch (see 0011): rows reference these tables.
        op.execute("ALTER TABLE api_keys DROP COLUMN expiry_warned_at")
        op.execute("ALTER TABLE accounts DROP COLUMN allowed_networks")
        op.execute("ALTER TABLE accounts DROP COLUMN ends_at")
    else:
        op.drop_column('api_keys', 'expiry_warned_at')
        op.drop_column('accounts', 'allowed_networks')
        op.drop_column('accounts', 'ends_at')
