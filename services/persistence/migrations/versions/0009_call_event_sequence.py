"""calls.event_sequence: the sequence of the call's last event

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

Each event of a call carries the next number of the call's own sequence. A counter on the call row,
which every change locks anyway, hands it out without a query of the events.
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls') as batch:
        batch.add_column(sa.Column('event_sequence', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('calls') as batch:
        batch.drop_column('event_sequence')
