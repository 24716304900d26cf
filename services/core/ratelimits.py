"""Per-workspace limits: requests per second, and calls and messages created per minute.

Both kinds count in one row per workspace and limit (`rate_windows`), taken from with one conditional
upsert: `used` grows only while it is under the limit, and the first use in a later window starts the
count again. On PostgreSQL the upsert locks the row, so concurrent takers on any replica queue on it
and see each other's counts; on SQLite writers are serialised anyway. So the counts are exact across
replicas.

- Creation limits (`take_created`) are taken in the creating transaction: a create that rolls back
  gives its count back, and one that commits is counted.
- The request rate is too hot for a write per request: each process keeps an in-memory bucket per
  workspace and leases tokens from the row in batches (a twentieth of the limit), counted in the
  second of the lease and spendable for LEASE_LIFETIME, so one request in a batch (or in a minute, for
  a quiet workspace) pays a database write and the others a few attribute reads. A bucket leases only
  when empty, so a replica carries at most one batch from earlier seconds into a second, and strands
  what it did not spend: across R replicas a workspace gets between the limit less R batches and the
  limit plus R batches in a second.

A workspace's limits are the deployment's defaults (the VOXPLANE_RATE_LIMIT_* settings) but those an
operator set for it (`workspace_limits`, `voxplane workspaces limits`). Each process keeps what it read
of a workspace's overrides for `rate_limit_refresh` seconds, so a change reaches every replica within
that long (and a request rate's from the replica's next lease).
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ..persistence.base import table_of
from ..persistence.db import Database
from ..persistence.tenancy import RateWindow, WorkspaceLimit
from . import config
from .errors import ResourceExhausted

REQUESTS, CALLS, MESSAGES = "requests", "calls", "messages"
KINDS = (REQUESTS, CALLS, MESSAGES)
_WINDOWS = {REQUESTS: 1, CALLS: 60, MESSAGES: 60}  # seconds
_WHAT = {REQUESTS: "requests per second", CALLS: "calls created per minute", MESSAGES: "messages sent per minute"}
_BATCHES = 20  # a request lease takes 1/_BATCHES of the limit
# Seconds a leased batch may be spent in: a workspace making few requests leases once in this long.
LEASE_LIFETIME = 60.0


def _upsert(dialect: Any) -> Any:
    table = table_of(RateWindow)
    statement = dialect.insert(table).values(
        workspace_id=bindparam("workspace_id"), kind=bindparam("kind"), window_start=bindparam("window"),
        used=bindparam("wanted"),
    )
    current, later = table.c.window_start, statement.excluded.window_start
    # A replica whose clock is behind counts in the current window rather than going back to its own.
    return statement.on_conflict_do_update(
        index_elements=[table.c.workspace_id, table.c.kind],
        set_={
            "used": case((current < later, statement.excluded.used), else_=table.c.used + statement.excluded.used),
            "window_start": case((current < later, later), else_=current),
        },
        where=(current < later) | (table.c.used < bindparam("limit")),
    ).returning(table.c.used)


_UPSERTS = {"postgresql": _upsert(postgresql), "sqlite": _upsert(sqlite)}


def _take(session: Session, workspace_id: int, kind: str, wanted: int, limit: int, now: float) -> int:
    """Takes up to `wanted` of the workspace's `limit` for the window of `now`; returns how many it got."""
    window = _WINDOWS[kind]
    used = session.execute(_UPSERTS[session.get_bind().dialect.name], {
        "workspace_id": workspace_id, "kind": kind, "window": int(now // window * window), "wanted": wanted,
        "limit": limit,
    }).scalar()
    if used is None:  # the window's count had reached the limit: nothing changed
        return 0
    return max(0, min(wanted, limit - (used - wanted)))


def _exhausted(kind: str, limit: int, now: float) -> ResourceExhausted:
    window = _WINDOWS[kind]
    retry_after = window - now % window
    return ResourceExhausted(
        f"The workspace reached its limit of {limit:,} {_WHAT[kind]}; retry in {retry_after:.3g} s.", retry_after
    )


def default_limit(kind: str) -> int:
    """The deployment's limit of `kind` (0: none), for a workspace with no override of it."""
    current = config.settings()
    return {REQUESTS: current.rate_limit_requests, CALLS: current.rate_limit_calls,
            MESSAGES: current.rate_limit_messages}[kind]


def overrides(session: Session, workspace_id: int) -> dict[str, int]:
    """The limits an operator set for the workspace, by kind, as stored (read now, not cached)."""
    rows = session.execute(select(WorkspaceLimit.kind, WorkspaceLimit.value)
                           .where(WorkspaceLimit.workspace_id == workspace_id))
    return {kind: value for kind, value in rows}


def set_overrides(session: Session, workspace_id: int, values: Mapping[str, int | None]) -> None:
    """Sets the workspace's limits of the kinds in `values` (0: no limit), or with None goes back to the default."""
    for kind, value in values.items():
        session.execute(delete(WorkspaceLimit).where(WorkspaceLimit.workspace_id == workspace_id,
                                                     WorkspaceLimit.kind == kind))
        if value is not None:
            session.add(WorkspaceLimit(workspace_id=workspace_id, kind=kind, value=value))
    session.flush()


# Per database (its writer engine), what this process read of each workspace's overrides, and until when
# (time.monotonic()) it may use them.
_READ: weakref.WeakKeyDictionary[Engine, dict[int, tuple[float, dict[str, int]]]] = weakref.WeakKeyDictionary()


def _cached(engine: Engine, workspace_id: int) -> dict[str, int] | None:
    found = _READ.get(engine, {}).get(workspace_id)
    return found[1] if found is not None and time.monotonic() < found[0] else None


def _overrides_of(session: Session, workspace_id: int) -> dict[str, int]:
    """The workspace's overrides, from this process's cache while it is fresh, else read again."""
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    found = _cached(engine, workspace_id)
    if found is None:
        found = overrides(session, workspace_id)
        _READ.setdefault(engine, {})[workspace_id] = (time.monotonic() + config.settings().rate_limit_refresh, found)
    return found


def _limit(kind: str, overridden: Mapping[str, int]) -> int:
    return overridden.get(kind, default_limit(kind))


def take_created(session: Session, kind: str, workspace_ids: Sequence[int]) -> list[ResourceExhausted | None]:
    """Counts one creation of `kind` (CALLS, MESSAGES) for each of `workspace_ids` in the creating
    transaction; returns, for each, None when it is within its workspace's limit (the first ones of a
    workspace are), else the error to answer it with. Workspaces are taken in id order, so that two
    transactions never deadlock."""
    now = time.time()
    wanted: dict[int, int] = {}
    for workspace_id in workspace_ids:
        wanted[workspace_id] = wanted.get(workspace_id, 0) + 1
    limits = {w: _limit(kind, _overrides_of(session, w)) for w in sorted(wanted)}
    granted = {w: _take(session, w, kind, wanted[w], limits[w], now) if limits[w] else wanted[w] for w in sorted(wanted)}
    outcomes: list[ResourceExhausted | None] = []
    for workspace_id in workspace_ids:
        outcomes.append(None if granted[workspace_id] > 0 else _exhausted(kind, limits[workspace_id], now))
        granted[workspace_id] -= 1
    return outcomes


def take_one_created(session: Session, kind: str, workspace_id: int) -> None:
    """`take_created` for one creation; raises ResourceExhausted over the limit (rolling its transaction back)."""
    if over := take_created(session, kind, [workspace_id])[0]:
        raise over


class _Bucket:
    __slots__ = ("expires", "tokens", "limit", "exhausted_until", "leasing")

    def __init__(self) -> None:
        self.expires = 0.0  # until when (time.time()) the tokens may be spent
        self.tokens = 0
        self.limit = 0  # the workspace's limit when the tokens were leased
        self.exhausted_until = 0.0  # the end of the second whose budget is used up, on every replica
        self.leasing: asyncio.Future[None] | None = None


class RequestLimiter:
    """One process's buckets of request tokens, per workspace, for the servicers sharing a Database."""

    _of: weakref.WeakKeyDictionary[Database, RequestLimiter] = weakref.WeakKeyDictionary()

    def __init__(self, db: Database):
        self.db = db
        self._buckets: dict[int, _Bucket] = {}

    @classmethod
    def of(cls, db: Database) -> RequestLimiter:
        found = cls._of.get(db)
        if found is None:
            found = cls._of[db] = cls(db)
        return found

    def admit_now(self, workspace_id: int) -> bool:
        """Takes a token from the bucket, if it has one: the hot path, no awaiting."""
        bucket = self._buckets.get(workspace_id)
        if bucket is not None and bucket.tokens and time.time() < bucket.expires:
            bucket.tokens -= 1
            return True
        return False

    async def admit(self, workspace_id: int) -> None:
        """Takes a token, leasing a batch when the bucket has none; raises ResourceExhausted when the
        workspace's budget for this second is used up."""
        bucket = self._buckets.get(workspace_id)
        if bucket is None:
            bucket = self._buckets[workspace_id] = _Bucket()
        while True:
            now = time.time()
            if bucket.tokens and now < bucket.expires:
                bucket.tokens -= 1
                return
            if now < bucket.exhausted_until:
                raise _exhausted(REQUESTS, bucket.limit, now)
            if bucket.leasing is None:  # one lease at a time; the others wait for it
                bucket.leasing = asyncio.ensure_future(self._lease(workspace_id, bucket, now))
            await asyncio.shield(bucket.leasing)

    async def _lease(self, workspace_id: int, bucket: _Bucket, now: float) -> None:
        try:
            overridden = _cached(self.db.writer, workspace_id)
            if overridden is not None and not _limit(REQUESTS, overridden):
                self._unlimited(bucket, now)  # no limit, as of a fresh read: the database is not asked
                return
            got = await self.db.run_transaction(lambda s: self._take(s, workspace_id, bucket, now), write=True)
            if got is None:
                self._unlimited(bucket, now)
                return
            bucket.tokens, bucket.expires = got, now + LEASE_LIFETIME
            if got < max(1, math.ceil(bucket.limit / _BATCHES)):
                bucket.exhausted_until = math.floor(now) + 1.0
        finally:
            bucket.leasing = None

    @staticmethod
    def _take(session: Session, workspace_id: int, bucket: _Bucket, now: float) -> int | None:
        """Leases a batch of the workspace's limit for this second; None: it has no limit."""
        bucket.limit = _limit(REQUESTS, _overrides_of(session, workspace_id))
        if not bucket.limit:
            return None
        return _take(session, workspace_id, REQUESTS, max(1, math.ceil(bucket.limit / _BATCHES)), bucket.limit, now)

    @staticmethod
    def _unlimited(bucket: _Bucket, now: float) -> None:
        """Tokens for a lease's lifetime, never asked of the database."""
        bucket.tokens, bucket.expires = 1 << 62, now + LEASE_LIFETIME
