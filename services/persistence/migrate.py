"""Alembic, driven from code: `voxplane migrate` and the test fixtures both call `upgrade`."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import make_url

from .db import normalise_url, one_shot_engine

# The PostgreSQL advisory lock migrations run under (any constant no other lock of ours uses).
_MIGRATION_LOCK = 0x766F78_6D6967  # "vox" "mig"

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = normalise_url(url)
    return config


@contextlib.contextmanager
def _one_migrator(url: str) -> Iterator[None]:
    """Held by one migrating process at a time, so that replicas started together each run `migrate`
    safely: the first applies the migrations, the others wait, then find nothing left to do. On
    PostgreSQL a session advisory lock (released if the process dies); on SQLite an flock beside the file."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        database = make_url(url).database
        with open(f"{database}.migrate-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        return
    engine = one_shot_engine(url, autocommit=True)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    with _one_migrator(url):
        command.upgrade(alembic_config(url), revision)
