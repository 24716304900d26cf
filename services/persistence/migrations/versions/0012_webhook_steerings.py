"""webhook_steerings: what came of each steering POST, shown on the event's delivery

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

Calls' steering POSTs an event before the dispatcher has made the event's delivery, so the outcome is
kept by event and URL and joined to the delivery when deliveries are listed.
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('webhook_steerings',
    sa.Column('event_row_id', Id, nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('result', sa.String(length=16), nullable=False),
    sa.Column('instruction', sa.String(length=1024), nullable=False),
    sa.Column('error', sa.String(length=512), nullable=False),
    sa.Column('response_code', sa.Integer(), nullable=False),
    sa.Column('request_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome_time', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['event_row_id'], ['events.id'], name=op.f('fk_webhook_steerings_event_row_id_events'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('event_row_id', 'url', name=op.f('pk_webhook_steerings')),
    )


def downgrade() -> None:
    op.drop_table('webhook_steerings')
