"""no app_ref: the application resource it named was never provided (contract v1)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

A number routed only to an app_ref routes no call from here on (it had nothing behind it).
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _routing_check(application: str) -> str:
    return (
        "(CASE WHEN aor_link IS NULL THEN 0 ELSE 1 END)"
        f" + (CASE WHEN {application} THEN 0 ELSE 1 END)"
        " + (CASE WHEN forward_sip_to IS NULL THEN 0 ELSE 1 END) <= 1"
    )


def _number_routes(application_columns: str) -> str:
    return (
        "CREATE VIEW number_routes AS"
        f" SELECT n.e164_number, n.aor_link, {application_columns}, n.forward_sip_to,"
        " n.recording_enabled, n.caller_id_prefix, n.caller_id_passthrough, w.ref AS workspace_ref"
        " FROM numbers n JOIN workspaces w ON w.id = n.workspace_id WHERE n.state = 'ACTIVE'"
    )


def upgrade() -> None:
    op.execute("DROP VIEW number_routes")  # SQLite rebuilds `numbers` below (batch mode)
    with op.batch_alter_table('numbers', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_numbers_one_routing'), type_='check')
        batch_op.drop_column('ingress_app_ref')
        batch_op.create_check_constraint('one_routing', _routing_check("ingress_webhook IS NULL"))
    op.execute(_number_routes("n.ingress_webhook"))
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('app_ref')


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('app_ref', sa.String(length=128), nullable=True))
    op.execute("DROP VIEW number_routes")
    with op.batch_alter_table('numbers', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_numbers_one_routing'), type_='check')
        batch_op.add_column(sa.Column('ingress_app_ref', sa.String(length=128), nullable=True))
        batch_op.create_check_constraint(
            'one_routing', _routing_check("ingress_webhook IS NULL AND ingress_app_ref IS NULL")
        )
    op.execute(_number_routes("n.ingress_webhook, n.ingress_app_ref"))
