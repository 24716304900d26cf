"""events notify: on PostgreSQL, a committed insert into the outbox notifies channel voxplane_events with
each topic it wrote, so that every replica's streams and webhook dispatcher wake at once (LISTEN/NOTIFY
as the wake-up, the outbox as the truth). One notification per statement and topic, sent at commit.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite: one process, which wakes its own readers
    op.execute("""
        CREATE FUNCTION voxplane_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('voxplane_events', topic) FROM (SELECT DISTINCT topic FROM new_events) AS written;
            RETURN NULL;
        END $$
    """)
    op.execute("""
        CREATE TRIGGER events_notify AFTER INSERT ON events REFERENCING NEW TABLE AS new_events
        FOR EACH STATEMENT EXECUTE FUNCTION voxplane_notify_events()
    """)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER events_notify ON events")
    op.execute("DROP FUNCTION voxplane_notify_events()")
