"""indexes for the exact-match list filters, each in the list's id order

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

A filter that matches one call in ten thousand walked the workspace's calls newest first until it
had a page; with an index of (workspace, filtered column, id) its page costs what a dense one does.
"""

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

CALLS = {
    'ix_calls_workspace_id_from_party_id': ['workspace_id', 'from_party', 'id'],
    'ix_calls_workspace_id_to_party_id': ['workspace_id', 'to_party', 'id'],
    'ix_calls_workspace_id_status_id': ['workspace_id', 'status', 'id'],
    'ix_calls_workspace_id_direction_id': ['workspace_id', 'direction', 'id'],
}
NUMBERS = {
    'ix_numbers_workspace_id_state_id': ['workspace_id', 'state', 'id'],
    'ix_numbers_workspace_id_provider_ref_id': ['workspace_id', 'provider_ref', 'id'],
    'ix_numbers_workspace_id_aor_link_id': ['workspace_id', 'aor_link', 'id'],
}


def upgrade() -> None:
    op.drop_index('ix_calls_workspace_id_from_party', table_name='calls')
    op.drop_index('ix_calls_workspace_id_to_party', table_name='calls')
    for name, columns in CALLS.items():
        op.create_index(name, 'calls', columns)
    op.drop_index('ix_call_labels_label', table_name='call_labels')
    op.create_index('ix_call_labels_label_call_id', 'call_labels', ['label', 'call_id'])
    for name, columns in NUMBERS.items():
        op.create_index(name, 'numbers', columns)


def downgrade() -> None:
    for name in NUMBERS:
        op.drop_index(name, table_name='numbers')
    op.drop_index('ix_call_labels_label_call_id', table_name='call_labels')
    op.create_index('ix_call_labels_label', 'call_labels', ['label'])
    for name in CALLS:
        op.drop_index(name, table_name='calls')
    op.create_index('ix_calls_workspace_id_to_party', 'calls', ['workspace_id', 'to_party'])
    op.create_index('ix_calls_workspace_id_from_party', 'calls', ['workspace_id', 'from_party'])
