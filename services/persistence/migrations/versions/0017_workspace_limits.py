"""workspace_limits: a workspace's own request rate, calls and messages per minute, in place of the defaults

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('workspace_limits',
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_workspace_limits_workspace_id_workspaces'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('workspace_id', 'kind', name=op.f('pk_workspace_limits')),
    )


def downgrade() -> None:
    op.drop_table('workspace_limits')
