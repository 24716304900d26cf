"""number lifecycle, settings, subscriber, emergency address, inventory

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


ONE_ROUTING_BEFORE = "(aor_link IS NULL) <> (ingress_webhook IS NULL AND ingress_app_ref IS NULL)"
# Acquired numbers may have no routing yet; forward_sip_to is a third kind.
AT_MOST_ONE_ROUTING = (
    "(CASE WHEN aor_link IS NULL THEN 0 ELSE 1 END)"
    " + (CASE WHEN ingress_webhook IS NULL AND ingress_app_ref IS NULL THEN 0 ELSE 1 END)"
    " + (CASE WHEN forward_sip_to IS NULL THEN 0 ELSE 1 END) <= 1"
)
NUMBER_ROUTES_BEFORE = (
    "CREATE VIEW number_routes AS"
    " SELECT n.e164_number, n.aor_link, n.ingress_webhook, n.ingress_app_ref, w.ref AS workspace_ref"
    " FROM numbers n JOIN workspaces w ON w.id = n.workspace_id"
)
# Only numbers in service route calls.
NUMBER_ROUTES = (
    "CREATE VIEW number_routes AS"
    " SELECT n.e164_number, n.aor_link, n.ingress_webhook, n.ingress_app_ref, n.forward_sip_to,"
    " n.recording_enabled, n.caller_id_prefix, n.caller_id_passthrough, w.ref AS workspace_ref"
    " FROM numbers n JOIN workspaces w ON w.id = n.workspace_id WHERE n.state = 'ACTIVE'"
)


def upgrade() -> None:
    # SQLite rebuilds `numbers` below (batch mode); the view over it must not be in the way.
    op.execute("DROP VIEW number_routes")
    op.create_table('inventory_numbers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('e164_number', sa.String(length=16), nullable=False),
    sa.Column('provider_ref', sa.String(length=128), nullable=False),
    sa.Column('region_code', sa.String(length=3), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inventory_numbers')),
    sa.UniqueConstraint('e164_number', name=op.f('uq_inventory_numbers_e164_number'))
    )
    with op.batch_alter_table('inventory_numbers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inventory_numbers_prefix'), ['prefix'], unique=False)

    op.create_table('number_emergency_addresses',
    sa.Column('number_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('street_address', sa.String(length=255), nullable=False),
    sa.Column('extended_address', sa.String(length=255), nullable=False),
    sa.Column('locality', sa.String(length=128), nullable=False),
    sa.Column('region', sa.String(length=128), nullable=False),
    sa.Column('postal_code', sa.String(length=16), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('problems', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['number_id'], ['numbers.id'], name=op.f('fk_number_emergency_addresses_number_id_numbers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('number_id', name=op.f('pk_number_emergency_addresses'))
    )
    op.create_table('number_subscribers',
    sa.Column('number_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('first_name', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('address1', sa.String(length=255), nullable=False),
    sa.Column('address2', sa.String(length=255), nullable=False),
    sa.Column('address3', sa.String(length=255), nullable=False),
    sa.Column('address4', sa.String(length=255), nullable=False),
    sa.Column('postcode', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('rejection_reason', sa.String(length=512), nullable=False),
    sa.Column('update_time', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['number_id'], ['numbers.id'], name=op.f('fk_number_subscribers_number_id_numbers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('number_id', name=op.f('pk_number_subscribers'))
    )
    with op.batch_alter_table('numbers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('forward_sip_to', sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column('state', sa.String(length=16), server_default='ACTIVE', nullable=False))
        batch_op.add_column(sa.Column('reserve_expire_time', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('release_time', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('from_inventory', sa.Boolean(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('recording_enabled', sa.Boolean(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('caller_id_prefix', sa.String(length=16), server_default='', nullable=False))
        batch_op.add_column(sa.Column('caller_id_passthrough', sa.Boolean(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('context', sa.String(length=16), server_default='INCOMING', nullable=False))
        batch_op.add_column(sa.Column('emergency_enabled', sa.Boolean(), server_default='0', nullable=False))
        batch_op.drop_constraint(op.f('ck_numbers_one_routing'), type_='check')
        batch_op.create_check_constraint('one_routing', AT_MOST_ONE_ROUTING)
        batch_op.create_check_constraint(
            'known_state', "state IN ('RESERVED', 'ACTIVE', 'SUSPENDED', 'PORTING_IN', 'RELEASED')"
        )
        batch_op.create_check_constraint('reservation_expires', "state <> 'RESERVED' OR reserve_expire_time IS NOT NULL")
        batch_op.create_check_constraint('release_has_time', "state <> 'RELEASED' OR release_time IS NOT NULL")
    op.execute(NUMBER_ROUTES)


def downgrade() -> None:
    op.execute("DROP VIEW number_routes")
    op.execute("DELETE FROM numbers WHERE aor_link IS NULL AND ingress_webhook IS NULL AND ingress_app_ref IS NULL")
    with op.batch_alter_table('numbers', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_numbers_release_has_time'), type_='check')
        batch_op.drop_constraint(op.f('ck_numbers_reservation_expires'), type_='check')
        batch_op.drop_constraint(op.f('ck_numbers_known_state'), type_='check')
        batch_op.drop_constraint(op.f('ck_numbers_one_routing'), type_='check')
        batch_op.create_check_constraint('one_routing', ONE_ROUTING_BEFORE)
        batch_op.drop_column('emergency_enabled')
        batch_op.drop_column('context')
        batch_op.drop_column('caller_id_passthrough')
        batch_op.drop_column('caller_id_prefix')
        batch_op.drop_column('recording_enabled')
        batch_op.drop_column('from_inventory')
        batch_op.drop_column('release_time')
        batch_op.drop_column('reserve_expire_time')
        batch_op.drop_column('state')
        batch_op.drop_column('forward_sip_to')

    op.drop_table('number_subscribers')
    op.drop_table('number_emergency_addresses')
    with op.batch_alter_table('inventory_numbers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inventory_numbers_prefix'))

    op.drop_table('inventory_numbers')
    op.execute(NUMBER_ROUTES_BEFORE)
