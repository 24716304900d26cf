"""messaging: messages (SMS and faxes) with their status changes and fax documents, faxlines, opt-outs,
messaging settings, the simulated carrier's hand-offs, and the numbers' messaging webhook

Revision ID: 0011
Revises: 0009 (the head of issue 11's migrations; re-chain it after any that lands first)
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('carrier_handoffs',
    sa.Column('message_ref', sa.String(length=32), nullable=False),
    sa.Column('carrier_ref', sa.String(length=32), nullable=False),
    sa.Column('offers', sa.Integer(), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('message_ref', name=op.f('pk_carrier_handoffs'))
    )
    op.create_table('faxlines',
    sa.Column('number', sa.String(length=16), nullable=False),
    sa.Column('alias', sa.String(length=255), nullable=False),
    sa.Column('tagline', sa.String(length=64), nullable=False),
    sa.Column('can_send', sa.Boolean(), nullable=False),
    sa.Column('can_receive', sa.Boolean(), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ref', sa.String(length=32), nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('update_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_faxlines_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_faxlines')),
    sa.UniqueConstraint('ref', name=op.f('uq_faxlines_ref')),
    sa.UniqueConstraint('workspace_id', 'number', name=op.f('uq_faxlines_workspace_id_number')),
    sa.UniqueConstraint('workspace_id', 'request_id', name=op.f('uq_faxlines_workspace_id_request_id'))
    )
    op.create_index(op.f('ix_faxlines_workspace_id'), 'faxlines', ['workspace_id'], unique=False)
    op.create_table('message_opt_outs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sender', sa.String(length=16), nullable=False),
    sa.Column('recipient', sa.String(length=16), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_message_opt_outs_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_opt_outs')),
    sa.UniqueConstraint('workspace_id', 'sender', 'recipient', name=op.f('uq_message_opt_outs_workspace_id_sender_recipient'))
    )
    op.create_table('messages',
    sa.Column('type', sa.String(length=8), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('destination', sa.String(length=16), nullable=False),
    sa.Column('body', sa.String(length=1600), nullable=False),
    sa.Column('encoding', sa.String(length=8), nullable=False),
    sa.Column('num_segments', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('failure_reason', sa.String(length=255), nullable=False),
    sa.Column('webhook', sa.String(length=2048), nullable=True),
    sa.Column('send_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('due_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=32), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('event_sequence', sa.Integer(), nullable=False),
    sa.Column('faxline_ref', sa.String(length=32), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('page_count', sa.Integer(), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('fax_failure', sa.String(length=24), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ref', sa.String(length=32), nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('update_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.CheckConstraint("direction IN ('INBOUND', 'OUTBOUND')", name=op.f('ck_messages_known_direction')),
    sa.CheckConstraint("status IN ('QUEUED', 'SCHEDULED', 'SENDING', 'SENT', 'DELIVERED', 'UNDELIVERED', 'FAILED', 'CANCELED', 'RECEIVED', 'PENDING')", name=op.f('ck_messages_known_status')),
    sa.CheckConstraint("type IN ('SMS', 'FAX')", name=op.f('ck_messages_known_type')),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_messages_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages')),
    sa.UniqueConstraint('ref', name=op.f('uq_messages_ref')),
    sa.UniqueConstraint('workspace_id', 'request_id', name=op.f('uq_messages_workspace_id_request_id'))
    )
    op.create_index('ix_messages_due_time', 'messages', ['due_time'], unique=False)
    op.create_index(op.f('ix_messages_workspace_id'), 'messages', ['workspace_id'], unique=False)
    op.create_index('ix_messages_workspace_id_destination_id', 'messages', ['workspace_id', 'destination', 'id'], unique=False)
    op.create_index('ix_messages_workspace_id_direction_id', 'messages', ['workspace_id', 'direction', 'id'], unique=False)
    op.create_index('ix_messages_workspace_id_id', 'messages', ['workspace_id', 'id'], unique=False)
    op.create_index('ix_messages_workspace_id_source_id', 'messages', ['workspace_id', 'source', 'id'], unique=False)
    op.create_index('ix_messages_workspace_id_status_id', 'messages', ['workspace_id', 'status', 'id'], unique=False)
    op.create_index('ix_messages_workspace_id_type_id', 'messages', ['workspace_id', 'type', 'id'], unique=False)
    op.create_table('messaging_settings',
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('help_reply', sa.String(length=1600), nullable=False),
    sa.Column('update_time', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_messaging_settings_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('workspace_id', name=op.f('pk_messaging_settings'))
    )
    op.create_table('fax_documents',
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_fax_documents_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('message_id', name=op.f('pk_fax_documents'))
    )
    op.create_table('message_status_changes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('time', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_message_status_changes_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_status_changes'))
    )
    op.create_index(op.f('ix_message_status_changes_message_id'), 'message_status_changes', ['message_id'], unique=False)
    op.add_column('numbers', sa.Column('messaging_webhook', sa.String(length=2048), server_default='', nullable=False))


def downgrade() -> None:
    op.drop_column('numbers', 'messaging_webhook')
    for table in ('message_status_changes', 'fax_documents', 'messaging_settings', 'messages', 'message_opt_outs',
                  'faxlines', 'carrier_handoffs'):
        op.drop_table(table)
