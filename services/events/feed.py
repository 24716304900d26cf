"""One reader of the outbox per process, for every stream that watches events.

A stream that asked the database for its events every tick would cost a query per stream per tick:
a thousand idle watchers would be twenty thousand queries a second. Instead, while anyone watches, a
process runs one poller: it reads the new events of its topic once, every POLL_INTERVAL or as soon as
this process stored some (`wake`), renders each once, and hands it to the watchers it concerns.

A watcher that starts behind the poller (an old cursor) first reads on its own until it has caught
up, then takes the poller's rows. One whose client reads too slowly to keep up is dropped back to
reading on its own, so no queue grows past MAX_QUEUED. Either way every event reaches it once and in
order: a watcher's position only moves forward, and it is only handed rows after its position, which
the outbox's read order makes safe (outbox.py).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Generic, TypeVar

from ..persistence.base import utcnow
from ..persistence.db import Database, error_message
from . import outbox
from .models import Event
from .outbox import Position

log = logging.getLogger("voxplane.events.feed")

T = TypeVar("T")

POLL_INTERVAL = 0.05  # seconds between two reads of the poller when nothing wakes it (outbox.SAFETY_POLL while
# the process listens for other processes' events on PostgreSQL)
READ_LIMIT = 500  # rows per read
MAX_QUEUED = 1000  # rows waiting for one slow watcher before it reads on its own again
RETRY_PAUSE = 1.0  # seconds the poller waits after the database failed it


class _Watcher(Generic[T]):
    """One stream: what it watches, how far it has been handed events, and those not yet sent."""

    __slots__ = ("workspace_id", "resource_ref", "render", "position", "time", "queue", "ready", "live")

    def __init__(self, workspace_id: int, resource_ref: str | None, render: Callable[[Event], T], after: Position,
                 time: datetime):
        self.workspace_id, self.resource_ref, self.render = workspace_id, resource_ref, render
        # Every event up to `position` was sent or is queued; `time` is when that was known.
        self.position, self.time = after, time
        self.queue: collections.deque[T] = collections.deque()
        self.ready = asyncio.Event()
        self.live = False  # handed rows by the poller, rather than reading on its own

    def concerns(self, row: Event) -> bool:
        return (self.resource_ref is None or row.resource_ref == self.resource_ref) and (
            Position(row.txid, row.id) > self.position)


class EventFeed:
    """The events of one topic (e.g. "call") for the streams of this process."""

    def __init__(self, db: Database, topic: str):
        self.db, self.topic = db, topic
        self._watchers: dict[int, set[_Watcher[object]]] = {}  # live ones, by workspace
        self._position: Position | None = None  # the poller's, while it runs
        self._poller: asyncio.Task[None] | None = None
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """This process stored events: read them now rather than at the next tick."""
        self._woken.set()

    async def close(self) -> None:
        """Stops the poller (the server has stopped its streams, or is about to)."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)

    async def watch(
        self, workspace_id: int, after: Position, since: datetime, render: Callable[[Event], T],
        heartbeat: Callable[[Position, datetime], T], idle: float, resource_ref: str | None = None,
    ) -> AsyncIterator[T]:
        """The events of the workspace (of one resource, with `resource_ref`) after `after` (known final
        at `since`), each as `render` makes it, forever; `heartbeat(position, time)` when none came for
        `idle` seconds. `render` should be one object for every watcher: the poller renders a row once
        for all watchers with the same `render`."""
        watcher: _Watcher[T] = _Watcher(workspace_id, resource_ref, render, after, since)
        try:
            while True:
                if not watcher.live:
                    rows = await self._catch_up(watcher)
                    for row in rows:
                        yield render(row)
                    if len(rows) < READ_LIMIT:
                        self._join(watcher)
                    continue
                if not watcher.queue:
                    watcher.ready.clear()
                    try:
                        await asyncio.wait_for(watcher.ready.wait(), idle)
                    except TimeoutError:
                        yield heartbeat(watcher.position, watcher.time)
                while watcher.queue:
                    yield watcher.queue.popleft()
        finally:
            self._leave(watcher)

    async def _catch_up(self, watcher: _Watcher[T]) -> list[Event]:
        """One read of the watcher's own; moves its position to what the read found final."""
        at = utcnow()
        read = functools.partial(
            outbox.read, after=watcher.position, limit=READ_LIMIT, workspace_id=watcher.workspace_id,
            topic=self.topic, resource_ref=watcher.resource_ref,
        )
        rows, watcher.position = await self.db.run_transaction(read, write=False)
        watcher.time = rows[-1].create_time if rows else at
        return rows

    def _join(self, watcher: _Watcher[T]) -> None:
        """Hands the watcher over to the poller, if it has caught up with it (else it reads again). The
        poller then hands it every row after the poller's position, and the watcher skips those it has."""
        if self._position is not None and watcher.position < self._position:
            return
        if self._position is None:
            self._position = watcher.position
        watcher.live = True
        self._watchers.setdefault(watcher.workspace_id, set()).add(watcher)  # type: ignore[arg-type]
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    def _leave(self, watcher: _Watcher[T]) -> None:
        watcher.live = False
        same_workspace = self._watchers.get(watcher.workspace_id)
        if same_workspace is not None:
            same_workspace.discard(watcher)
            if not same_workspace:
                del self._watchers[watcher.workspace_id]

    async def _poll(self) -> None:
        """Reads while anyone watches; stops, forgetting its position, when no one does."""
        listener = self.db.listener(outbox.NOTIFY_CHANNEL)  # other replicas' events wake it too
        if listener is not None:
            listener.subscribe(self.topic, self.wake)
        try:
            while self._watchers:
                assert self._position is not None
                self._woken.clear()  # before the read: a wake during it means another read
                at = utcnow()
                read = functools.partial(outbox.read, after=self._position, limit=READ_LIMIT, topic=self.topic)
                try:
                    rows, position = await self.db.run_transaction(read, write=False)
                except Exception as error:  # noqa: BLE001 - the database may be away: watchers wait, then resume
                    log.warning("reading events failed (%s); trying again in %g s", error_message(error), RETRY_PAUSE)
                    await asyncio.sleep(RETRY_PAUSE)
                    continue
                self._hand_out(rows, position, at)
                if len(rows) == READ_LIMIT:
                    continue
                try:
                    await asyncio.wait_for(self._woken.wait(), outbox.poll_interval(listener, POLL_INTERVAL))
                except TimeoutError:
                    pass
        finally:
            if listener is not None:
                listener.unsubscribe(self.topic, self.wake)
            self._position, self._poller = None, None

    def _hand_out(self, rows: list[Event], position: Position, at: datetime) -> None:
        rendered: dict[tuple[Callable[[Event], object], int], object] = {}
        for row in rows:
            for watcher in list(self._watchers.get(row.workspace_id, ())):
                if not watcher.concerns(row):
                    continue
                if len(watcher.queue) >= MAX_QUEUED:  # too slow: it reads on its own from where it is
                    self._leave(watcher)
                    watcher.ready.set()
                    continue
                key = (watcher.render, row.id)
                if key not in rendered:
                    rendered[key] = watcher.render(row)
                watcher.queue.append(rendered[key])
                watcher.position, watcher.time = Position(row.txid, row.id), row.create_time
                watcher.ready.set()
        self._position = position
        for same_workspace in self._watchers.values():
            for watcher in same_workspace:
                if watcher.position < position:
                    watcher.position, watcher.time = position, at
