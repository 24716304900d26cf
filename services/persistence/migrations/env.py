"""Alembic environment: runs migrations on the URL `voxplane.services.persistence.migrate` passes."""

from alembic import context

from voxplane.services.persistence.db import one_shot_engine
from voxplane.services.schema import metadata

config = context.config


def run() -> None:
    engine = one_shot_engine(config.attributes["url"])
    with engine.connect() as connection:
        # Batch mode lets SQLite, which cannot ALTER most things, follow later migrations.
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `voxplane migrate`")
run()
