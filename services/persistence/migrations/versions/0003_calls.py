"""calls

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('calls',
    sa.Column('from_party', sa.String(length=512), nullable=False),
    sa.Column('to_party', sa.String(length=512), nullable=False),
    sa.Column('caller_id', sa.String(length=16), nullable=False),
    sa.Column('device_id', sa.String(length=32), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('hangup_cause', sa.String(length=24), nullable=True),
    sa.Column('muted', sa.Boolean(), nullable=False),
    sa.Column('on_hold', sa.Boolean(), nullable=False),
    sa.Column('recording', sa.Boolean(), nullable=False),
    sa.Column('app_ref', sa.String(length=128), nullable=True),
    sa.Column('webhook', sa.String(length=2048), nullable=True),
    sa.Column('timeout_seconds', sa.Integer(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('answer_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('starred', sa.Boolean(), nullable=False),
    sa.Column('archived', sa.Boolean(), nullable=False),
    sa.Column('read', sa.Boolean(), nullable=False),
    sa.Column('note', sa.String(length=1000), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ref', sa.String(length=32), nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('update_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.CheckConstraint("direction IN ('INBOUND', 'OUTBOUND')", name=op.f('ck_calls_known_direction')),
    sa.CheckConstraint("status IN ('QUEUED', 'RINGING', 'IN_PROGRESS', 'COMPLETED', 'BUSY', 'FAILED', 'NO_ANSWER', 'CANCELED')", name=op.f('ck_calls_known_status')),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_calls_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calls')),
    sa.UniqueConstraint('ref', name=op.f('uq_calls_ref')),
    sa.UniqueConstraint('workspace_id', 'request_id', name=op.f('uq_calls_workspace_id_request_id'))
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index('ix_calls_status', ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_workspace_id'), ['workspace_id'], unique=False)
        batch_op.create_index('ix_calls_workspace_id_from_party', ['workspace_id', 'from_party'], unique=False)
        batch_op.create_index('ix_calls_workspace_id_id', ['workspace_id', 'id'], unique=False)
        batch_op.create_index('ix_calls_workspace_id_to_party', ['workspace_id', 'to_party'], unique=False)

    op.create_table('call_labels',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('call_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_call_labels_call_id_calls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_labels')),
    sa.UniqueConstraint('call_id', 'label', name=op.f('uq_call_labels_call_id_label'))
    )
    with op.batch_alter_table('call_labels', schema=None) as batch_op:
        batch_op.create_index('ix_call_labels_label', ['label'], unique=False)

    op.create_table('call_participants',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('call_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('number', sa.String(length=512), nullable=False),
    sa.Column('muted', sa.Boolean(), nullable=False),
    sa.Column('on_hold', sa.Boolean(), nullable=False),
    sa.Column('owner', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_call_participants_call_id_calls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_participants'))
    )
    with op.batch_alter_table('call_participants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_participants_call_id'), ['call_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('call_participants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_participants_call_id'))

    op.drop_table('call_participants')
    with op.batch_alter_table('call_labels', schema=None) as batch_op:
        batch_op.drop_index('ix_call_labels_label')

    op.drop_table('call_labels')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_workspace_id_to_party')
        batch_op.drop_index('ix_calls_workspace_id_id')
        batch_op.drop_index('ix_calls_workspace_id_from_party')
        batch_op.drop_index(batch_op.f('ix_calls_workspace_id'))
        batch_op.drop_index('ix_calls_status')

    op.drop_table('calls')
