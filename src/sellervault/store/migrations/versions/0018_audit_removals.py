"""audit removals

``audit_removals``: the signed statements of the retention job (``audit.retention``), each
saying which events it removed and where the log's chain and Merkle tree continue from.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0018'
down_revision: str | Sequence[str] | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'audit_removals',
        sa.Column('number', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('removed_through', sa.BigInteger(), nullable=False),
        sa.Column('statement', sa.Text(), nullable=False),
        sa.Column('signature', sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint('number', name=op.f('pk_audit_removals')),
    )


class RemovalsInTheLogError(RuntimeError):
    """Refuses a downgrade that would leave the log unverifiable."""


def downgrade() -> None:
    """Refused once events were removed: without the statements the log would begin with an
    event that links to nothing, and verification would fail for good."""
    recorded = op.get_bind().execute(sa.text("SELECT count(*) FROM audit_removals")).scalar()
    if recorded:
        raise RemovalsInTheLogError(
            f"{recorded} retention statements say where the log begins: downgrading below "
            "0018 would make it fail verification")
    op.drop_table('audit_removals')
