"""Whether a runner's process is alive, told at once: a lock each runner holds for as long as it runs.

The heartbeat takes six silent beats (30 s) to tell a crashed Calls process, during which its calls
still look live and accept controls. So each runner also holds a lock that its process's end releases
whatever the way it ends (a `kill -9` included), and a starting runner tries the lock of every runner
the database knows: one it can take belongs to a process that is gone, whose calls it ends at once.

- PostgreSQL: a session advisory lock, on a key hashed from the runner id, held on a connection of its
  own; the server releases it when that session ends (the process's death closes its socket).
- SQLite: single-host, and where a held database lock would stop every writer, an `flock` on a file
  of the runner's in `<database file>.runners/`, which the kernel releases when the process dies.

A lock free while its runner is alive is possible in one case, on PostgreSQL: the lock's session lost
(the server restarted) and the runner not yet beaten since (it locks again before it stamps a beat).
So a free lock counts as death only for a runner that beat since the server started.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from ..persistence.db import Database
from ..persistence.locks import advisory_key
from .models import CallRunner


def lock_key(runner_id: str) -> int:
    """The runner's PostgreSQL advisory lock key: a signed 64-bit hash of its id."""
    return advisory_key(f"voxplane.calls.runner:{runner_id}")


def lock_folder(db: Database) -> Path:
    """Where a SQLite database's runners keep their lock files: beside the database file."""
    database = make_url(db.url).database or ""
    return Path(database + ".runners")


class RunnerLock:
    """This process's runner lock. `acquire`, `keep` and `release` do blocking I/O: run them on the
    database threads (`db.run`), which bound their waits as any database call's."""

    def __init__(self, db: Database, runner_id: str):
        self.db = db
        self.runner_id = runner_id
        self._connection: Any = None  # PostgreSQL: the pooled-outside connection whose session holds it
        self._file: int | None = None  # SQLite: the locked file's descriptor
        self._holding = False  # PostgreSQL: whether that connection's session holds the lock

    def acquire(self) -> None:
        """Takes the lock, at the runner's start (its id is new: nobody else can hold it)."""
        if self.db.is_sqlite:
            folder = lock_folder(self.db)
            folder.mkdir(exist_ok=True)
            fd = os.open(folder / f"{self.runner_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._file = fd
            return
        if not self._try():
            raise RuntimeError(f"the lock of Calls runner {self.runner_id} is held by another session")

    def keep(self) -> None:
        """Takes the lock again if its session was lost (a database restart), before a beat is stamped.
        After a partition, the server may keep the lost session (and the lock) a while yet: the lock is
        still held for us then, and every beat tries to take it on the new session until that one ends."""
        if self.db.is_sqlite:
            return
        if self._connection is not None and self._holding:
            try:
                self.db.watch(self._connection.dbapi_connection)
                cursor = self._connection.cursor()
                cursor.execute("SELECT 1")
                cursor.close()
                return
            except Exception:  # noqa: BLE001 - the session is gone, and the lock with it
                self._drop()
        self._try()

    def _try(self) -> bool:
        """pg_try_advisory_lock on this runner's key, on the lock's connection (made if missing)."""
        if self._connection is None:
            self._connection = self.db.dedicated_connection()
        try:
            self.db.watch(self._connection.dbapi_connection)
            cursor = self._connection.cursor()
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(self.runner_id),))
            (taken,) = cursor.fetchone()
            cursor.close()
        except BaseException:
            self._drop()
            raise
        self._holding = bool(taken)
        return self._holding

    def _drop(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()
        self._connection = None
        self._holding = False

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                (lock_folder(self.db) / f"{self.runner_id}.lock").unlink()
            os.close(self._file)  # closing the descriptor releases the flock
            self._file = None
        if self._connection is not None:
            self._drop()  # the session's end releases the advisory lock


def dead_runners(session: Session, db: Database, runner_id: str) -> set[str]:
    """The runners the database knows whose process is gone: their lock is free. Runs in the starting
    runner's transaction (`session`), once its own lock is held."""
    known = [(other, beat) for other, beat in session.execute(select(CallRunner.id, CallRunner.heartbeat_time))
             if other != runner_id]
    if not known:
        return set()
    if db.is_sqlite:
        return {other for other, _ in known if _lock_file_free(lock_folder(db) / f"{other}.lock")}
    return _free_advisory_locks(session, known)


def _lock_file_free(path: Path) -> bool:
    """Whether no process holds the flock on `path`. A missing file tells nothing (a runner of a release
    before these locks): the heartbeat decides for it."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: alive
    else:
        with contextlib.suppress(OSError):
            path.unlink()
        return True
    finally:
        os.close(fd)  # and our flock with it


def _free_advisory_locks(session: Session, known: Collection[tuple[str, datetime]]) -> set[str]:
    started = session.scalar(select(func.pg_postmaster_start_time()))
    dead: set[str] = set()
    for other, beat in known:
        if started is None or beat <= started:
            continue  # not beaten since the server started: its lock may not be taken again yet
        key = lock_key(other)
        if session.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}):
            session.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            dead.add(other)
    return dead
