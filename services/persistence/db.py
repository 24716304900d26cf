"""Engine, units of work, and the hot-path lookups.

Database work is synchronous SQLAlchemy run on a small thread pool, so the
grpc.aio event loop never waits on the database. Each unit of work is one
session and one transaction.

The lookups made on every call (the API key) or on every inbound call (where
a number routes) skip the ORM: a `Lookup` is a SELECT compiled once and run
on a plain DBAPI cursor, an order of magnitude cheaper than a Session. They
run on the event loop itself, with no thread hop (`Database.lookup`): on
SQLite an indexed read takes microseconds and never waits on writers (WAL);
on PostgreSQL they go over psycopg's async connections, a few per loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from sqlalchemy import Engine, Select, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    import sqlite3

    from sqlalchemy import Connection
    from sqlalchemy.pool import ConnectionPoolEntry

T = TypeVar("T")

# A SELECT of any columns (SQLAlchemy 2.1 types a Select by the tuple of its columns' types).
AnySelect: TypeAlias = "Select[*tuple[Any, ...]]"


def normalise_url(url: str) -> str:
    """`postgres://` and `postgresql://` mean psycopg 3, the driver we ship."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _tune_sqlite(engine: Engine, begin: str) -> None:
    # WAL lets the SIP proxy read while we write; foreign keys are off by default in SQLite.
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Checkpoint every ~40 MB of WAL rather than SQLite's 4 MB: a page that several commits change
        # (an index leaf) is copied back once per checkpoint: a bulk import ran 5-10% faster.
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        cursor.close()

    # A writer takes the write lock when it begins, so two writers queue on the
    # busy timeout instead of failing when a read lock cannot be upgraded.
    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
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


class Lookup:
    """A SELECT compiled once for a dialect, to run on a raw DBAPI cursor."""

    def __init__(self, statement: AnySelect, engine: Engine):
        self._compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(self._compiled)
        self._positions = self._compiled.positiontup  # qmark dialects (SQLite) bind by position

    def parameters(self, values: dict[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        bound = self._compiled.construct_params(values)
        return [bound[name] for name in self._positions] if self._positions else bound


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
        # Lookups use connections of their own, one per thread, in autocommit mode.
        self._lookup_engine = one_shot_engine(self.url, autocommit=True)
        self._lookup_connections = threading.local()
        self._opened: list[Any] = []
        self._opened_lock = threading.Lock()
        self._lookups: dict[int, Lookup] = {}
        self._async_lookups: dict[asyncio.AbstractEventLoop, AsyncLookups] = {}
        self._threads = threads

    def transaction(self, fn: Callable[[Session], T], *, write: bool) -> T:
        """Runs `fn` in one transaction, committed if it returns, rolled back if it raises."""
        sessions = self._write_sessions if write else self._read_sessions
        with sessions.begin() as session:
            return fn(session)

    async def run(self, fn: Callable[[], T]) -> T:
        """Runs `fn` on the database threads, awaited from the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def run_transaction(self, fn: Callable[[Session], T], *, write: bool) -> T:
        """`transaction(fn)` on the database threads, awaited from the event loop."""
        return await self.run(lambda: self.transaction(fn, write=write))

    def fetch_one(self, statement: AnySelect, **values: Any) -> tuple[Any, ...] | None:
        """The first row of `statement` (a module-level constant, compiled once) on this thread's raw
        connection. A lost database raises LookupUnavailable."""
        lookup = self._lookup(statement)
        connection = getattr(self._lookup_connections, "connection", None)
        if connection is None:
            pooled = self._lookup_engine.raw_connection()
            with self._opened_lock:
                self._opened.append(pooled)
            connection = self._lookup_connections.connection = pooled.dbapi_connection
            assert connection is not None  # only an invalidated pool connection has none; this one is new
        dbapi = self._lookup_engine.dialect.loaded_dbapi
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(lookup.sql, lookup.parameters(values))
                return cursor.fetchone()
            finally:
                cursor.close()
        except (dbapi.OperationalError, dbapi.InterfaceError) as error:
            self._lookup_connections.connection = None  # reconnect next time
            raise LookupUnavailable(str(error)) from error

    async def lookup(self, statement: AnySelect, **values: Any) -> tuple[Any, ...] | None:
        """`fetch_one`, from the event loop without leaving it. A lost database raises LookupUnavailable."""
        if self.is_sqlite:
            return self.fetch_one(statement, **values)
        loop = asyncio.get_running_loop()
        pool = self._async_lookups.get(loop)
        if pool is None:
            pool = self._async_lookups[loop] = AsyncLookups(self._lookup_engine, self._threads)
        return await pool.fetch_one(self._lookup(statement), values)

    def _lookup(self, statement: AnySelect) -> Lookup:
        found = self._lookups.get(id(statement))
        if found is None:
            found = self._lookups[id(statement)] = Lookup(statement, self._lookup_engine)
        return found

    async def close_lookups(self) -> None:
        """Closes the async lookup connections of the running event loop, if it has any."""
        pool = self._async_lookups.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._opened_lock:
            for connection in self._opened:
                connection.close()
        self.writer.dispose()
        self.reader.dispose()
        self._lookup_engine.dispose()


class DatabaseUnavailable(Exception):
    """The database could not be reached, or did not answer in time: a caller may retry shortly."""


class LookupUnavailable(DatabaseUnavailable):
    """The database could not answer a lookup."""


# PostgreSQL error codes (SQLSTATE) of a database that will likely answer if asked again: its
# connection exceptions (class 08), an administrator's or a crash's shutdown, too many connections,
# a missing database (dropped, or not restored yet), and what concurrency and our own timeouts cause.
_TRANSIENT_SQLSTATES = frozenset(
    {"57P01", "57P02", "57P03", "53300", "3D000", "40001", "40P01", "55P03", "57014", "25P03"}
)
# SQLite's: another connection holds a lock (its busy timeout ran out), or the file cannot be opened.
_TRANSIENT_SQLITE = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_PROTOCOL"})


def is_transient(error: BaseException) -> bool:
    """Whether a database error says the database is away or busy for now (retry shortly), rather than
    that something is wrong with it or with us (a missing table, a full disk: no retry will help)."""
    from sqlalchemy import exc as sa_exc

    if isinstance(error, (DatabaseUnavailable, sa_exc.TimeoutError)):  # our timeouts, the pool's
        cause = error.__cause__
        return cause is None or _transient_dbapi(cause)
    if isinstance(error, sa_exc.DBAPIError):
        return error.connection_invalidated or _transient_dbapi(error.orig)
    return False


def _transient_dbapi(error: BaseException | None) -> bool:
    sqlite_name = getattr(error, "sqlite_errorname", None)
    if sqlite_name is not None:
        return sqlite_name in _TRANSIENT_SQLITE or "locked" in str(error)
    if type(error).__module__.startswith("psycopg"):
        sqlstate = getattr(error, "sqlstate", None)
        if sqlstate is None:  # no answer from a server: refused, lost, timed out, closed
            return type(error).__name__ in ("OperationalError", "InterfaceError")
        return sqlstate.startswith("08") or sqlstate in _TRANSIENT_SQLSTATES
    return False


def error_message(error: BaseException) -> str:
    """What the database said, without the statement and its parameters (which may hold a caller's data)."""
    from sqlalchemy import exc as sa_exc

    original = error.orig if isinstance(error, sa_exc.DBAPIError) else (error.__cause__ or error)
    return " ".join(str(original).split()) or type(original).__name__


class AsyncLookups:
    """psycopg async connections in autocommit for lookups on one event loop: up to `size` at once,
    opened when first needed and kept. A lookup that cannot reach the database raises LookupUnavailable."""

    def __init__(self, engine: Engine, size: int):
        import psycopg  # PostgreSQL only: SQLite deployments need not have it

        self._psycopg = psycopg
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Any] = []

    async def fetch_one(self, lookup: Lookup, values: dict[str, Any]) -> tuple[Any, ...] | None:
        psycopg = self._psycopg
        async with self._slots:
            # A kept connection the server has closed meanwhile (a restart) fails at once: then the
            # lookup is tried once more, on a new connection, before it is reported unavailable.
            while True:
                kept = self._idle.pop() if self._idle else None
                connection = kept
                try:
                    if connection is None:
                        connection = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                    cursor = await connection.execute(lookup.sql, lookup.parameters(values))
                    row = await cursor.fetchone()
                except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                    if connection is not None:
                        await connection.close()
                    if kept is not None:
                        await self.close()  # the other kept connections are likely stale too
                        continue
                    raise LookupUnavailable(str(error)) from error
                self._idle.append(connection)
                return row

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()


def one_shot_engine(url: str, *, autocommit: bool = False) -> Engine:
    """An engine without a pool: for commands that connect once, and for long-held lookup connections."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, poolclass=NullPool, connect_args={"check_same_thread": False})
        _tune_sqlite(engine, "BEGIN IMMEDIATE")  # lookups never BEGIN: their connection stays in autocommit
        return engine
    return create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT" if autocommit else None)
