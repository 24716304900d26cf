"""Engine and units of work.

Database work is synchronous SQLAlchemy run on a small thread pool, so the
grpc.aio event loop never waits on the database. Each unit of work is one
session and one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

T = TypeVar("T")


def normalise_url(url: str) -> str:
    """`postgres://` and `postgresql://` mean psycopg 3, the driver we ship."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _tune_sqlite(engine: Engine, begin: str) -> None:
    # WAL lets the SIP proxy read while we write; foreign keys are off by default in SQLite.
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # A writer takes the write lock when it begins, so two writers queue on the
    # busy timeout instead of failing when a read lock cannot be upgraded.
    @event.listens_for(engine, "begin")
    def on_begin(connection):  # type: ignore[no-untyped-def]
        connection.exec_driver_sql(begin)


def make_engine(url: str, *, writer: bool = True, pool_size: int = 8) -> Engine:
    url = normalise_url(url)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    if url in ("sqlite://", "sqlite:///:memory:"):
        raise ValueError("an in-memory SQLite database cannot be shared; use a file")
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 10},
        # One writer connection: in-process writers queue on the pool, not on SQLite's busy loop.
        pool_size=1 if writer else pool_size,
        max_overflow=0,
    )
    _tune_sqlite(engine, "BEGIN IMMEDIATE" if writer else "BEGIN")
    return engine


class Database:
    """The engines of one deployment and the thread pool that runs units of work."""

    def __init__(self, url: str, *, threads: int = 8):
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.writer = make_engine(self.url, writer=True, pool_size=threads)
        # PostgreSQL's MVCC needs no separate reader; SQLite readers skip the write lock.
        self.reader = make_engine(self.url, writer=False, pool_size=threads) if self.is_sqlite else self.writer
        self._write_sessions = sessionmaker(self.writer, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.reader, expire_on_commit=False)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="db")

    def transaction(self, fn: Callable[[Session], T], *, write: bool) -> T:
        """Runs `fn` in one transaction, committed if it returns, rolled back if it raises."""
        sessions = self._write_sessions if write else self._read_sessions
        with sessions.begin() as session:
            return fn(session)

    async def run(self, fn: Callable[[Session], T], *, write: bool) -> T:
        """`transaction` on the database threads, awaited from the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self.transaction(fn, write=write))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.writer.dispose()
        self.reader.dispose()


def one_shot_engine(url: str) -> Engine:
    """An engine for commands that connect once (migrations, the CLI)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, poolclass=NullPool)
        _tune_sqlite(engine, "BEGIN IMMEDIATE")
        return engine
    return create_engine(url, poolclass=NullPool)
