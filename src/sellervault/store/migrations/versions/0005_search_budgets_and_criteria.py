"""search budgets, and the kinds of criteria a search used in its security event

A search by buyer email, phone or postal code is a PII operation: each principal has a budget
of them per window (``access_budgets``, one row per principal and budget, taken by one
conditional upsert), and the search's event names which kinds of criteria it used
(``security_events.criteria``, never the values). The new event column is covered by the
MAC only when set, so the events already in the log verify unchanged.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('access_budgets',
    sa.Column('principal_id', sa.String(length=32), nullable=False),
    sa.Column('budget', sa.String(length=32), nullable=False),
    sa.Column('window_start', sa.BigInteger(), nullable=False),
    sa.Column('used', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('principal_id', 'budget', name=op.f('pk_access_budgets'))
    )
    # A nullable column without a default: SQLite adds it in place (no table rebuild).
    op.add_column('security_events', sa.Column('criteria', sa.String(length=64), nullable=True))


class CriteriaInTheLogError(RuntimeError):
    """Refuses a downgrade that would break the security log's verification."""


def downgrade() -> None:
    """Downgrade schema. Refused once any event has criteria: the column is covered by those
    events' MACs, so dropping it would make them (and the chain after them) fail
    verification for good."""
    recorded = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM security_events WHERE criteria IS NOT NULL")).scalar()
    if recorded:
        raise CriteriaInTheLogError(
            f"{recorded} security events record search criteria, which their MACs cover: "
            "downgrading below 0005 would make the log fail verification")
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.drop_column('criteria')
    op.drop_table('access_budgets')
