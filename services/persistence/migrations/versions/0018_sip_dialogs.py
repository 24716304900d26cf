"""sip_dialogs: the SIP dialogs of live calls' legs, so that a killed gateway sends their BYEs when it starts again

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sip_dialogs',
    sa.Column('gateway', sa.String(length=300), nullable=False),
    sa.Column('call_ref', sa.String(length=32), nullable=False),
    sa.Column('leg', sa.String(length=1), nullable=False),
    sa.Column('call_id', sa.String(length=255), nullable=False),
    sa.Column('local_uri', sa.String(length=512), nullable=False),
    sa.Column('local_tag', sa.String(length=128), nullable=False),
    sa.Column('remote_uri', sa.String(length=512), nullable=False),
    sa.Column('remote_tag', sa.String(length=128), nullable=False),
    sa.Column('remote_target', sa.String(length=512), nullable=False),
    sa.Column('route_set', sa.JSON(), nullable=False),
    sa.Column('next_hop', sa.String(length=300), nullable=False),
    sa.Column('contact', sa.String(length=512), nullable=False),
    sa.Column('cseq', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('gateway', 'call_ref', 'leg', name=op.f('pk_sip_dialogs')),
    )


def downgrade() -> None:
    op.drop_table('sip_dialogs')
