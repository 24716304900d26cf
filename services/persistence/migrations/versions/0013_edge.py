"""edge: the tables Kamailio reads and writes in voxplane's database

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02

Kamailio 5.6's `version` and `location` (usrloc) tables as its kamdbctl schema makes them, and the
version rows its modules check. Agents' credentials are the `sip_subscribers` view of 0001.
"""

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

# Kamailio 5.6's usrloc refuses to start without `location` at 9; `sip_subscribers` is recorded at 7, the
# version kamdbctl gives auth_db's subscriber table, which it has the shape of.
TABLE_VERSIONS = {"version": 1, "location": 9, "sip_subscribers": 7}


def upgrade() -> None:
    version = op.create_table('version',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('table_name', sa.VARCHAR(length=32), nullable=False),
    sa.Column('table_version', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_version')),
    sa.UniqueConstraint('table_name', name='version_table_name_idx'),
    )
    op.bulk_insert(version, [{"table_name": name, "table_version": v} for name, v in TABLE_VERSIONS.items()])
    op.create_table('location',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('ruid', sa.VARCHAR(length=64), server_default='', nullable=False),
    sa.Column('username', sa.VARCHAR(length=64), server_default='', nullable=False),
    sa.Column('domain', sa.VARCHAR(length=253), nullable=True),
    sa.Column('contact', sa.VARCHAR(length=512), server_default='', nullable=False),
    sa.Column('received', sa.VARCHAR(length=128), nullable=True),
    sa.Column('path', sa.VARCHAR(length=512), nullable=True),
    sa.Column('expires', sa.TIMESTAMP(), server_default='2030-05-28 21:32:15', nullable=False),
    sa.Column('q', sa.REAL(), server_default=sa.text('1.0'), nullable=False),
    sa.Column('callid', sa.VARCHAR(length=255), server_default='Default-Call-ID', nullable=False),
    sa.Column('cseq', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('last_modified', sa.TIMESTAMP(), server_default='2000-01-01 00:00:01', nullable=False),
    sa.Column('flags', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('cflags', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('user_agent', sa.VARCHAR(length=255), server_default='', nullable=False),
    sa.Column('socket', sa.VARCHAR(length=64), nullable=True),
    sa.Column('methods', sa.Integer(), nullable=True),
    sa.Column('instance', sa.VARCHAR(length=255), nullable=True),
    sa.Column('reg_id', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('server_id', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('connection_id', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('keepalive', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('partition', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_location')),
    sa.UniqueConstraint('ruid', name='location_ruid_idx'),
    )
    op.create_index('location_account_contact_idx', 'location', ['username', 'domain', 'contact'])
    op.create_index('location_expires_idx', 'location', ['expires'])
    op.create_index('location_tcpcon_idx', 'location', ['connection_id'])
    op.create_index('location_connection_idx', 'location', ['server_id', 'connection_id'])


def downgrade() -> None:
    op.drop_table('location')
    op.drop_table('version')
