"""the buyer's pseudonym in security events

An event about one buyer's order (read, reveal, a search that found one buyer, a canary
touched) names the buyer by a keyed pseudonym (``crypto.pseudonyms``), never a value, so an
investigator can find every event about one buyer and the retrieval-volume detector can
count distinct buyers. The column is covered by the MAC only when set (``audit.chain``), so
the events already in the log verify unchanged.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0015'
down_revision: str | Sequence[str] | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # A nullable column without a default: SQLite adds it in place (no table rebuild).
    op.add_column('security_events', sa.Column('buyer', sa.String(length=40), nullable=True))


class PseudonymsInTheLogError(RuntimeError):
    """Refuses a downgrade that would break the security log's verification."""


def downgrade() -> None:
    """Downgrade schema. Refused once any event names a buyer: the column is covered by those
    events' MACs, so dropping it would make them (and the chain after them) fail
    verification for good."""
    recorded = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM security_events WHERE buyer IS NOT NULL")).scalar()
    if recorded:
        raise PseudonymsInTheLogError(
            f"{recorded} security events name a buyer's pseudonym, which their MACs cover: "
            "downgrading below 0015 would make the log fail verification")
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.drop_column('buyer')
