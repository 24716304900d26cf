"""events: the outbox every service writes its changes' events to

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ref', sa.String(length=32), nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('topic', sa.String(length=16), nullable=False),
    sa.Column('resource_ref', sa.String(length=32), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('network_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('txid', sa.BigInteger(), nullable=False),
    sa.Column('webhook', sa.String(length=2048), nullable=True),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_events_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events')),
    sa.UniqueConstraint('ref', name=op.f('uq_events_ref')),
    sa.UniqueConstraint('topic', 'resource_ref', 'sequence', name=op.f('uq_events_topic_resource_ref_sequence')),
    sqlite_autoincrement=True,
    )
    op.create_index('ix_events_workspace_id_txid_id', 'events', ['workspace_id', 'txid', 'id'])
    op.create_index('ix_events_txid_id', 'events', ['txid', 'id'])
    op.create_index('ix_events_create_time', 'events', ['create_time'])


def downgrade() -> None:
    op.drop_table('events')
