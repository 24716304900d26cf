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
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..persistence.base import table_of
from ..persistence.db import Database
from ..persistence.tenancy import RateWindow
from . import config
from .errors import ResourceExhausted

REQUESTS, CALLS, MESSAGES = "requests", "calls", "messages"
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


def _limit(kind: str) -> int:
    current = config.settings()
    return {REQUESTS: current.rate_limit_requests, CALLS: current.rate_limit_calls,
            MESSAGES: current.rate_limit_messages}[kind]


def take_created(session: Session, kind: str, workspace_ids: Sequence[int]) -> list[bool]:
    """Counts one creation of `kind` (CALLS, MESSAGES) for each of `workspace_ids` in the creating
    transaction; returns, for each, whether it is within its workspace's limit (the first ones of a
    workspace are). Workspaces are taken in id order, so that two transactions never deadlock."""
    limit = _limit(kind)
    if not limit:
        return [True] * len(workspace_ids)
    now = time.time()
    wanted: dict[int, int] = {}
    for workspace_id in workspace_ids:
        wanted[workspace_id] = wanted.get(workspace_id, 0) + 1
    granted = {w: _take(session, w, kind, wanted[w], limit, now) for w in sorted(wanted)}
    allowed = []
    for workspace_id in workspace_ids:
        allowed.append(granted[workspace_id] > 0)
        granted[workspace_id] -= 1
    return allowed


def created_exhausted(kind: str) -> ResourceExhausted:
    """The error of a creation over its limit, retried at the next window."""
    return _exhausted(kind, _limit(kind), time.time())


def take_one_created(session: Session, kind: str, workspace_id: int) -> None:
    """`take_created` for one creation; raises ResourceExhausted over the limit (rolling its transaction back)."""
    if not take_created(session, kind, [workspace_id])[0]:
        raise created_exhausted(kind)


class _Bucket:
    __slots__ = ("expires", "tokens", "exhausted_until", "leasing")

    def __init__(self) -> None:
        self.expires = 0.0  # until when (time.time()) the tokens may be spent
        self.tokens = 0
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
                raise _exhausted(REQUESTS, _limit(REQUESTS), now)
            if bucket.leasing is None:  # one lease at a time; the others wait for it
                bucket.leasing = asyncio.ensure_future(self._lease(workspace_id, bucket, now))
            await asyncio.shield(bucket.leasing)

    async def _lease(self, workspace_id: int, bucket: _Bucket, now: float) -> None:
        try:
            limit = _limit(REQUESTS)
            if not limit:  # no limit: tokens for a lease's lifetime, never asked of the database
                bucket.tokens, bucket.expires = 1 << 62, now + LEASE_LIFETIME
                return
            batch = max(1, math.ceil(limit / _BATCHES))
            got = await self.db.run_transaction(lambda s: _take(s, workspace_id, REQUESTS, batch, limit, now), write=True)
            bucket.tokens, bucket.expires = got, now + LEASE_LIFETIME
            if got < batch:
                bucket.exhausted_until = math.floor(now) + 1.0
        finally:
            bucket.leasing = None
