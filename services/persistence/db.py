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

No database call waits for longer than the database's `timeout` (VOXPLANE_DB_TIMEOUT) for an answer:
on a database that stopped answering (a network partition drops packets, and nothing resets the
connection) a lookup or a unit of work raises DatabaseUnavailable once the timeout passes, and the
connection it was waiting on is shut down, so that the thread blocked on it is freed and the
connection is never used again.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from sqlalchemy import Engine, Select, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool, QueuePool

from .listen import Listener

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


def connect_timeout(timeout: float) -> int:
    """libpq's connect_timeout for a call `timeout` long: it counts whole seconds, and 2 at least."""
    return max(2, math.ceil(timeout))


def make_engine(url: str, *, writer: bool = True, pool_size: int = 8, timeout: float = 2.0) -> Engine:
    """An engine whose errors never show a statement's parameters (they may hold a caller's data, and
    an error's text goes to the log)."""
    url = normalise_url(url)
    if not url.startswith("sqlite"):
        return create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            connect_args={"connect_timeout": connect_timeout(timeout)},
            hide_parameters=True,
        )
    if url in ("sqlite://", "sqlite:///:memory:"):
        raise ValueError("an in-memory SQLite database cannot be shared; use a file")
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 10},
        # One writer connection: in-process writers queue on the pool, not on SQLite's busy loop.
        pool_size=1 if writer else pool_size,
        max_overflow=0,
        hide_parameters=True,
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


@dataclass(frozen=True)
class PoolUse:
    """What one engine's connection pool holds: connections lent out now, and how many it may lend at most."""

    checked_out: int
    capacity: int


class Database:
    """The engines of one deployment and the thread pool that runs units of work."""

    def __init__(self, url: str, *, threads: int = 8, timeout: float = 2.0):
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.timeout = timeout
        self.writer = make_engine(self.url, writer=True, pool_size=threads, timeout=timeout)
        # PostgreSQL's MVCC needs no separate reader; SQLite readers skip the write lock.
        self.reader = (
            make_engine(self.url, writer=False, pool_size=threads, timeout=timeout) if self.is_sqlite else self.writer
        )
        self._watchdog = Watchdog(timeout, [self.writer, self.reader])
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
        self._listeners: dict[tuple[asyncio.AbstractEventLoop, str], Listener] = {}
        self._threads = threads

    def transaction(self, fn: Callable[[Session], T], *, write: bool) -> T:
        """Runs `fn` in one transaction, committed if it returns, rolled back if it raises."""
        sessions = self._write_sessions if write else self._read_sessions
        with sessions.begin() as session:
            return fn(session)

    async def run(self, fn: Callable[[], T]) -> T:
        """Runs `fn` on the database threads, awaited from the event loop. When it has waited for the
        database (queued, for a connection, or for an answer; not while our own code runs between two
        answers, so a long import of many statements is fine) for longer than `timeout` seconds, it
        raises DatabaseUnavailable; the watchdog frees the thread."""
        watchdog = self._watchdog
        job = watchdog.job()
        future = asyncio.get_running_loop().run_in_executor(self._pool, watchdog.work, job, fn)
        try:
            while (left := watchdog.late(job)) > 0:
                done, _ = await asyncio.wait((future,), timeout=left)
                if done:
                    return future.result()
        except BaseException:
            future.cancel()  # cancelled by our caller: a job still queued never runs; the watchdog frees one running
            raise
        job.abandoned = True
        future.cancel()  # a job still queued never runs
        raise DatabaseUnavailable(f"the database gave no answer in {self.timeout:g} s")

    async def run_transaction(self, fn: Callable[[Session], T], *, write: bool) -> T:
        """`transaction(fn)` on the database threads, awaited from the event loop."""
        return await self.run(lambda: self.transaction(fn, write=write))

    def pool_use(self) -> dict[str, PoolUse]:
        """The units of work's pools by engine, `writer` and (SQLite) `reader`; the lookups' connections,
        one per thread or loop, are outside them."""
        engines = {"writer": self.writer} if self.reader is self.writer else {"writer": self.writer, "reader": self.reader}
        # The overflow allowed is the one figure QueuePool keeps unexposed (make_engine sets it).
        return {
            name: PoolUse(pool.checkedout(), pool.size() + max(0, pool._max_overflow))
            for name, engine in engines.items()
            if isinstance(pool := engine.pool, QueuePool)
        }

    def dedicated_connection(self) -> Any:
        """A DBAPI connection of its own (a pool's wrapper of one; `.dbapi_connection` is the driver's), in
        autocommit, outside every pool: for what lasts as long as the process, like a session lock."""
        return self._lookup_engine.raw_connection()

    def watch(self, dbapi_connection: Any) -> None:
        """Tells the watchdog that the unit of work running on this thread now waits on `dbapi_connection`
        (one outside the pools, which it does not see): past the timeout, its socket is shut down too."""
        self._watchdog.using(dbapi_connection)

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
            pool = self._async_lookups[loop] = AsyncLookups(self._lookup_engine, self._threads, self.timeout)
        return await pool.fetch_one(self._lookup(statement), values)

    def _lookup(self, statement: AnySelect) -> Lookup:
        found = self._lookups.get(id(statement))
        if found is None:
            found = self._lookups[id(statement)] = Lookup(statement, self._lookup_engine)
        return found

    def listener(self, channel: str) -> Listener | None:
        """The running loop's listener on the PostgreSQL `channel` (persistence/listen.py), started when
        first asked for; None on SQLite, whose one process wakes its own readers."""
        if self.is_sqlite:
            return None
        loop = asyncio.get_running_loop()
        found = self._listeners.get((loop, channel))
        if found is None:
            found = self._listeners[(loop, channel)] = Listener(
                conninfo(self._lookup_engine), channel, connect_timeout(self.timeout))
        return found

    async def close_lookups(self) -> None:
        """Closes the async lookup connections and the listeners of the running event loop, if it has any."""
        loop = asyncio.get_running_loop()
        pool = self._async_lookups.pop(loop, None)
        if pool is not None:
            await pool.close()
        for key in [key for key in self._listeners if key[0] is loop]:
            await self._listeners.pop(key).close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._watchdog.close()
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
            return any(kind.__name__ in ("OperationalError", "InterfaceError") for kind in type(error).__mro__)
        return sqlstate.startswith("08") or sqlstate in _TRANSIENT_SQLSTATES
    return False


def error_message(error: BaseException) -> str:
    """What the database said, without the statement and its parameters (which may hold a caller's data)."""
    original = error.orig if isinstance(error, sa_exc.DBAPIError) else (error.__cause__ or error)
    return " ".join(str(original).split()) or type(original).__name__


class _Job:
    """One unit of work on the database threads, as the watchdog sees it."""

    __slots__ = ("waiting_since", "connection", "abandoned", "freed", "lock")

    def __init__(self) -> None:
        # Since when it waits for the database (queued, for a connection, or for an answer); None while
        # our own code runs between two answers, which no database timeout counts.
        self.waiting_since: float | None = time.monotonic()
        self.connection: Any = None  # the DBAPI connection it uses, if any
        self.abandoned = False  # its caller was told the database is unavailable
        self.freed = False  # its connection was shut down
        self.lock = threading.Lock()

    def waited(self, now: float) -> float:
        since = self.waiting_since
        return 0.0 if since is None else now - since


class Watchdog:
    """Frees the database threads from calls the database gives no answer to.

    A thread blocked reading a socket whose packets are dropped stays blocked for as long as the
    partition lasts (no reset comes; TCP keepalives do not fire while anything acknowledges), and
    neither libpq's connect_timeout nor the server's statement_timeout help a query the server never
    received. So every unit of work records the connection it uses and since when it waits for the
    database; one waiting longer than `timeout` has its connection's socket shut down (from this
    thread: the blocked read then returns at once, the call fails as a lost connection, and the pool
    discards it). On SQLite, whose calls wait only on locks and the disk, it is interrupted.
    """

    def __init__(self, timeout: float, engines: Sequence[Engine]):
        self.timeout = timeout
        self._jobs: set[_Job] = set()
        self._jobs_lock = threading.Lock()
        self._current = threading.local()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        for engine in dict.fromkeys(engines):
            self._watch(engine)

    def _watch(self, engine: Engine) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def asking(*_: Any) -> None:
            job = self._job()
            if job is not None:
                if job.abandoned:  # its caller was told the database is unavailable: nobody expects this now
                    raise DatabaseUnavailable(f"the database gave no answer in {self.timeout:g} s")
                if job.waiting_since is None:
                    job.waiting_since = time.monotonic()

        @event.listens_for(engine, "after_cursor_execute")
        def answered(*_: Any) -> None:
            self._answered()

        @event.listens_for(engine, "checkout")
        def checked_out(dbapi_connection: Any, *_: Any) -> None:
            self.using(dbapi_connection)
            self._answered()

        @event.listens_for(engine, "checkin")
        def checked_in(*_: Any) -> None:
            self.using(None)

        # The DBAPI calls that wait for the database outside cursor.execute: the pool's pre-ping of a
        # kept connection (before "checkout"), commit and rollback.
        dialect = engine.dialect
        for name in ("do_ping", "do_commit", "do_rollback"):
            setattr(dialect, name, self._waits(getattr(dialect, name)))

    def _waits(self, call: Callable[[Any], T]) -> Callable[[Any], T]:
        def waiting(dbapi_connection: Any) -> T:
            job = self._job()
            if job is None:
                return call(dbapi_connection)
            self.using(dbapi_connection)
            if job.waiting_since is None:
                job.waiting_since = time.monotonic()
            result = call(dbapi_connection)
            job.waiting_since = None
            return result

        return waiting

    def _job(self) -> _Job | None:
        return getattr(self._current, "job", None)

    def _answered(self) -> None:
        job = self._job()
        if job is not None:
            job.waiting_since = None

    def using(self, dbapi_connection: Any) -> None:
        """Records the connection the unit of work on this thread uses (None: it has none)."""
        job = self._job()
        if job is not None:
            with job.lock:
                job.connection = dbapi_connection

    def job(self) -> _Job:
        if self._thread is None:
            with self._jobs_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._patrol, name="db-watchdog", daemon=True)
                    self._thread.start()
        return _Job()

    def late(self, job: _Job) -> float:
        """Seconds until `job` has waited for the database for longer than the timeout (<= 0: it has)."""
        return self.timeout - job.waited(time.monotonic())

    def work(self, job: _Job, fn: Callable[[], T]) -> T:
        """Runs `fn` on this database thread, watched."""
        if job.abandoned or self.late(job) <= 0:  # queued for too long: its caller has given up
            raise DatabaseUnavailable(f"the database gave no answer in {self.timeout:g} s")
        self._current.job = job
        with self._jobs_lock:
            self._jobs.add(job)
        try:
            return fn()
        except Exception as error:
            if job.freed or job.abandoned:
                raise DatabaseUnavailable(f"the database gave no answer in {self.timeout:g} s") from error
            raise
        finally:
            with self._jobs_lock:
                self._jobs.discard(job)
            self._current.job = None

    def _patrol(self) -> None:
        interval = min(0.25, max(0.02, self.timeout / 10))
        while not self._closed.wait(interval):
            now = time.monotonic()
            with self._jobs_lock:
                late = [job for job in self._jobs if not job.freed and job.waited(now) > self.timeout]
            for job in late:
                with job.lock:  # held by checkin too: the connection is still this job's while we shut it
                    job.abandoned = True
                    if job.connection is not None:
                        job.freed = True
                        unblock(job.connection)

    def close(self) -> None:
        self._closed.set()


def unblock(dbapi_connection: Any) -> None:
    """Makes a call blocked on this DBAPI connection, in another thread, fail at once."""
    interrupt = getattr(dbapi_connection, "interrupt", None)
    if interrupt is not None:  # sqlite3
        interrupt()
        return
    try:
        fd = dbapi_connection.pgconn.socket  # psycopg; raises if the connection is closed already
    except Exception:  # noqa: BLE001 - nothing to unblock
        return
    shut_down(fd)


def shut_down(fd: int) -> None:
    """Shuts down the socket `fd` both ways: a read blocked on it returns at once, as at a peer's close.
    A duplicate of the descriptor is shut down (a socket, not a descriptor, is shut), and closed."""
    try:
        with socket.socket(fileno=os.dup(fd)) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def conninfo(engine: Engine) -> str:
    """What psycopg connects to for the PostgreSQL engine `engine`."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class AsyncLookups:
    """psycopg async connections in autocommit for lookups on one event loop: up to `size` at once,
    opened when first needed and kept. A lookup that cannot reach the database raises LookupUnavailable."""

    def __init__(self, engine: Engine, size: int, timeout: float = 2.0):
        import psycopg  # PostgreSQL only: SQLite deployments need not have it

        self._psycopg = psycopg
        self._conninfo = conninfo(engine)
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Any] = []
        self._timeout = timeout

    async def fetch_one(self, lookup: Lookup, values: dict[str, Any]) -> tuple[Any, ...] | None:
        """The lookup's first row, within the timeout (waiting for a free connection included)."""
        deadline = time.monotonic() + self._timeout
        try:
            async with asyncio.timeout(self._timeout):  # Semaphore.acquire gives its slot back if cancelled
                await self._slots.acquire()
        except TimeoutError:
            raise LookupUnavailable(f"no lookup connection was free for {self._timeout:g} s") from None
        try:
            attempt = _Attempt()
            task = asyncio.ensure_future(self._fetch(lookup, values, attempt))
            try:
                done, _ = await asyncio.wait((task,), timeout=max(0.0, deadline - time.monotonic()))
            except BaseException:
                attempt.abandon(task)
                raise
            if done:
                return task.result()
            attempt.abandon(task)
            raise LookupUnavailable(f"the database gave no answer in {self._timeout:g} s")
        finally:
            self._slots.release()

    async def _fetch(self, lookup: Lookup, values: dict[str, Any], attempt: _Attempt) -> tuple[Any, ...] | None:
        psycopg = self._psycopg
        # A kept connection the server has closed meanwhile (a restart) fails at once: then the
        # lookup is tried once more, on a new connection, before it is reported unavailable.
        while True:
            kept = self._idle.pop() if self._idle else None
            connection = attempt.connection = kept
            try:
                if connection is None:
                    connection = attempt.connection = await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True, connect_timeout=connect_timeout(self._timeout)
                    )
                cursor = await connection.execute(lookup.sql, lookup.parameters(values))
                row = await cursor.fetchone()
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                if connection is not None:
                    await connection.close()
                if kept is not None and not attempt.abandoned:
                    await self.close()  # the other kept connections are likely stale too
                    continue
                raise LookupUnavailable(str(error)) from error
            if attempt.abandoned:  # answered just too late: its socket may be shut down already
                await connection.close()
            else:
                self._idle.append(connection)
            return row

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()


class _Attempt:
    """A lookup in progress: the connection it is on, and whether its caller has stopped waiting."""

    __slots__ = ("connection", "abandoned")

    def __init__(self) -> None:
        self.connection: Any = None
        self.abandoned = False

    def abandon(self, task: asyncio.Future[Any]) -> None:
        """Ends a lookup given up on. On a connection, its socket is shut down, so that the wait fails at
        once and the connection is closed (cancelling it would have psycopg send the server a cancel
        and wait for it, 10 s more on a partition); a connect in progress is cancelled."""
        self.abandoned = True
        task.add_done_callback(_retrieve)
        if self.connection is None:
            task.cancel()
            return
        try:
            fd = self.connection.pgconn.socket
        except Exception:  # noqa: BLE001 - closed already
            return
        shut_down(fd)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # what an abandoned lookup raised is its caller's no more


def one_shot_engine(url: str, *, autocommit: bool = False) -> Engine:
    """An engine without a pool: for commands that connect once, and for long-held lookup connections."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, poolclass=NullPool, connect_args={"check_same_thread": False}, hide_parameters=True
        )
        _tune_sqlite(engine, "BEGIN IMMEDIATE")  # lookups never BEGIN: their connection stays in autocommit
        return engine
    return create_engine(
        url, poolclass=NullPool, isolation_level="AUTOCOMMIT" if autocommit else None, hide_parameters=True
    )
