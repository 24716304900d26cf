"""Alembic environment: runs migrations on the URL `voxplane.services.persistence.migrate` passes."""

from alembic import context

# Alembic runs this file by path, not as part of the package, so it imports absolutely. mypy checks
# the servers as `services` and cannot see them as `voxplane.services` (the editable install maps them
# with an import hook), so to it these two modules are missing.
from voxplane.services.persistence.db import one_shot_engine  # type: ignore[import-not-found]  # see above
from voxplane.services.schema import metadata  # type: ignore[import-not-found]  # see above

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
