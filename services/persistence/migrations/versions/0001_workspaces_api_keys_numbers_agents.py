"""workspaces, api keys, numbers, agents

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('deployment_secrets',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_deployment_secrets'))
    )
    op.create_table('workspaces',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ref', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspaces')),
    sa.UniqueConstraint('name', name=op.f('uq_workspaces_name')),
    sa.UniqueConstraint('ref', name=op.f('uq_workspaces_ref'))
    )
    op.create_table('agents',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('privacy', sa.String(length=16), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ref', sa.String(length=32), nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('update_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_agents_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agents')),
    sa.UniqueConstraint('ref', name=op.f('uq_agents_ref')),
    sa.UniqueConstraint('workspace_id', 'request_id', name=op.f('uq_agents_workspace_id_request_id'))
    )
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agents_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('api_keys',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoke_time', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_api_keys_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash')),
    sa.UniqueConstraint('key_id', name=op.f('uq_api_keys_key_id'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('numbers',
    sa.Column('e164_number', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('provider_ref', sa.String(length=128), nullable=False),
    sa.Column('aor_link', sa.String(length=512), nullable=True),
    sa.Column('ingress_webhook', sa.String(length=2048), nullable=True),
    sa.Column('ingress_app_ref', sa.String(length=128), nullable=True),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ref', sa.String(length=32), nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('update_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.CheckConstraint('(aor_link IS NULL) <> (ingress_webhook IS NULL AND ingress_app_ref IS NULL)', name=op.f('ck_numbers_one_routing')),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_numbers_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_numbers')),
    sa.UniqueConstraint('e164_number', name=op.f('uq_numbers_e164_number')),
    sa.UniqueConstraint('ref', name=op.f('uq_numbers_ref')),
    sa.UniqueConstraint('workspace_id', 'request_id', name=op.f('uq_numbers_workspace_id_request_id'))
    )
    with op.batch_alter_table('numbers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_numbers_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('agent_credentials',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('agent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('domain', sa.String(length=253), nullable=False),
    sa.Column('ha1', sa.String(length=32), nullable=False),
    sa.Column('ha1b', sa.String(length=32), nullable=False),
    sa.Column('ha1_sha256', sa.String(length=64), nullable=False),
    sa.Column('ha1b_sha256', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_agent_credentials_agent_id_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_credentials')),
    sa.UniqueConstraint('username', 'domain', name=op.f('uq_agent_credentials_username_domain'))
    )
    with op.batch_alter_table('agent_credentials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agent_credentials_agent_id'), ['agent_id'], unique=False)



    # The key that signs list page tokens: one per deployment, shared by every replica.
    op.bulk_insert(
        sa.table("deployment_secrets", sa.column("name", sa.String), sa.column("value", sa.LargeBinary)),
        [{"name": "page_token_key", "value": secrets.token_bytes(32)}],
    )
    # What a stock SIP proxy reads: Kamailio's auth_db (user_column=username,
    # domain_column=domain, calculate_ha1=0) and the inbound routing of each number.
    op.execute(
        "CREATE VIEW sip_subscribers AS"
        " SELECT c.id, c.username, c.domain, c.ha1, c.ha1b, c.ha1_sha256, c.ha1b_sha256"
        " FROM agent_credentials c JOIN agents a ON a.id = c.agent_id WHERE a.enabled"
    )
    op.execute(
        "CREATE VIEW number_routes AS"
        " SELECT n.e164_number, n.aor_link, n.ingress_webhook, n.ingress_app_ref, w.ref AS workspace_ref"
        " FROM numbers n JOIN workspaces w ON w.id = n.workspace_id"
    )


def downgrade() -> None:
    op.execute("DROP VIEW number_routes")
    op.execute("DROP VIEW sip_subscribers")
    with op.batch_alter_table('agent_credentials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agent_credentials_agent_id'))

    op.drop_table('agent_credentials')
    with op.batch_alter_table('numbers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_numbers_workspace_id'))

    op.drop_table('numbers')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_workspace_id'))

    op.drop_table('api_keys')
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agents_workspace_id'))

    op.drop_table('agents')
    op.drop_table('workspaces')
    op.drop_table('deployment_secrets')
