"""blind-index indexes on the digest alone

The three blind-index indexes of ``orders`` were (tenant_id, X_bidx). A digest is an HMAC
under the tenant's own index key, so it already singles out one tenant's rows; searches
still filter on tenant_id. Indexing the digest alone keeps every search plan and makes each
entry smaller by the tenant id. Since the digests are random, every ingest commit rewrites
a page of these indexes per order, so their size is a large part of the cost of ingest.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

"""
from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BLIND_INDEXES = ('email_bidx', 'phone_bidx', 'postal_bidx')


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('orders', schema=None) as batch_op:
        for column in BLIND_INDEXES:
            batch_op.drop_index(f'ix_orders_{column}')
            batch_op.create_index(f'ix_orders_{column}', [column], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('orders', schema=None) as batch_op:
        for column in BLIND_INDEXES:
            batch_op.drop_index(f'ix_orders_{column}')
            batch_op.create_index(f'ix_orders_{column}', ['tenant_id', column], unique=False)
