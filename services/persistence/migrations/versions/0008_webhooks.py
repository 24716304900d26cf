"""webhooks: signing secrets, settings, endpoints, deliveries and the dispatcher's outbox position

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('webhook_signing_keys',
    sa.Column('workspace_id', Id, nullable=False),
    sa.Column('sealed', sa.LargeBinary(), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('previous_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('previous_expire_time', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_webhook_signing_keys_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('workspace_id', name=op.f('pk_webhook_signing_keys')),
    )
    op.create_table('webhook_settings',
    sa.Column('workspace_id', Id, nullable=False),
    sa.Column('incoming_url', sa.String(length=2048), nullable=False),
    sa.Column('outgoing_url', sa.String(length=2048), nullable=False),
    sa.Column('whitelist', sa.JSON(), nullable=False),
    sa.Column('keep_delivery_log', sa.Boolean(), nullable=False),
    sa.Column('update_time', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_webhook_settings_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('workspace_id', name=op.f('pk_webhook_settings')),
    )
    op.create_table('webhook_endpoints',
    sa.Column('id', Id, autoincrement=True, nullable=False),
    sa.Column('workspace_id', Id, nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('disabled_reason', sa.String(length=256), nullable=False),
    sa.Column('disable_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('payload_format', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_webhook_endpoints_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints')),
    sa.UniqueConstraint('workspace_id', 'url', name=op.f('uq_webhook_endpoints_workspace_id_url')),
    )
    op.create_table('webhook_deliveries',
    sa.Column('id', Id, autoincrement=True, nullable=False),
    sa.Column('ref', sa.String(length=32), nullable=False),
    sa.Column('workspace_id', Id, nullable=False),
    sa.Column('event_row_id', Id, nullable=False),
    sa.Column('event_id', sa.String(length=32), nullable=False),
    sa.Column('event_type', sa.String(length=48), nullable=False),
    sa.Column('resource_ref', sa.String(length=32), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('ready', sa.Boolean(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=512), nullable=False),
    sa.Column('last_response_code', sa.Integer(), nullable=False),
    sa.Column('next_attempt_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deliver_time', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_webhook_deliveries_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['event_row_id'], ['events.id'], name=op.f('fk_webhook_deliveries_event_row_id_events'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('ref', name=op.f('uq_webhook_deliveries_ref')),
    sa.UniqueConstraint('event_row_id', 'url', name=op.f('uq_webhook_deliveries_event_row_id_url')),
    )
    op.create_index('ix_webhook_deliveries_status_ready_next_attempt_time', 'webhook_deliveries', ['status', 'ready', 'next_attempt_time'])
    op.create_index('ix_webhook_deliveries_resource_ref_sequence', 'webhook_deliveries', ['resource_ref', 'sequence'])
    op.create_index('ix_webhook_deliveries_workspace_id_id', 'webhook_deliveries', ['workspace_id', 'id'])
    op.create_table('webhook_dispatch',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('txid', sa.BigInteger(), nullable=False),
    sa.Column('event_id', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_webhook_dispatch')),
    )
    # The key that seals the workspaces' signing secrets: one per deployment, shared by every replica.
    op.bulk_insert(
        sa.table("deployment_secrets", sa.column("name", sa.String), sa.column("value", sa.LargeBinary)),
        [{"name": "webhook_secret_key", "value": secrets.token_bytes(32)}],
    )


def downgrade() -> None:
    op.execute("DELETE FROM deployment_secrets WHERE name = 'webhook_secret_key'")
    for table in ('webhook_dispatch', 'webhook_deliveries', 'webhook_endpoints', 'webhook_settings', 'webhook_signing_keys'):
        op.drop_table(table)
