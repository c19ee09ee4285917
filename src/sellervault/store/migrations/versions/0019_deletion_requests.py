"""deletion requests and certificates

``deletion_requests``: the register of deletion and return requests, each on its 72-hour
clock, with the state of its execution (``deletion.execution``); ``certificates``: the signed
certificate of sanitization of each completed request.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: str | Sequence[str] | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'deletion_requests',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('scope', sa.String(length=16), nullable=False),
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('amazon_order_id', sa.String(length=64), nullable=True),
        sa.Column('buyer_digest', sa.String(length=64), nullable=True),
        sa.Column('buyer', sa.String(length=40), nullable=True),
        sa.Column('requested_by', sa.String(length=200), nullable=False),
        sa.Column('return_data', sa.Boolean(), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('deadline', sa.DateTime(timezone=True), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('step', sa.String(length=32), nullable=True),
        sa.Column('created_by', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('executed_by', sa.String(length=32), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('cancelled_by', sa.String(length=32), nullable=True),
        sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('orders', sa.Integer(), nullable=True),
        sa.Column('data_keys', sa.Integer(), nullable=True),
        sa.Column('data_key_ids', sa.Text(), nullable=True),
        sa.Column('tenant_keys', sa.Integer(), nullable=True),
        sa.Column('return_sha256', sa.String(length=64), nullable=True),
        sa.Column('verification', sa.Text(), nullable=True),
        sa.Column('warned', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_deletion_requests')),
    )
    op.create_index('ix_deletion_requests_open', 'deletion_requests', ['status', 'deadline'],
                    unique=False)
    op.create_table(
        'certificates',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('request_id', sa.String(length=32), nullable=False),
        sa.Column('document', sa.Text(), nullable=False),
        sa.Column('signature', sa.String(length=128), nullable=False),
        sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['request_id'], ['deletion_requests.id'],
                                name=op.f('fk_certificates_request_id_deletion_requests')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_certificates')),
        sa.UniqueConstraint('request_id', name=op.f('uq_certificates_request_id')),
    )


def downgrade() -> None:
    op.drop_table('certificates')
    op.drop_index('ix_deletion_requests_open', table_name='deletion_requests')
    op.drop_table('deletion_requests')
