"""PostgreSQL advisory lock keys, and a lock on a name for the rest of a write transaction."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.orm import Session


def advisory_key(name: str) -> int:
    """A PostgreSQL advisory lock key for `name`: a signed 64-bit hash of it."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def lock_until_commit(session: Session, name: str) -> None:
    """Holds a lock on `name` until the write transaction of `session` ends, so that writers of the same
    name queue. PostgreSQL: `pg_advisory_xact_lock`. SQLite: nothing to do, a write transaction already
    holds the database's one write lock from its BEGIN IMMEDIATE."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(advisory_key(name))))
