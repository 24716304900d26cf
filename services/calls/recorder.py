"""Stores what the network reports about running calls, many events to a transaction, never losing one.

Every ring, answer, hangup and DTMF is a change that must be stored, with its event, before the gateway
goes on with the call. One transaction per event would make the commit, and the hop to a database
thread, the cost of a call; instead, events that arrive while a transaction runs wait and go together
in the next one. Nothing waits on purpose: a lone event is written at once.

A write the database fails (away, locked, too slow: each try waits at most the database timeout) is
tried again, with backoff, until it is stored: the network has done what it reports, so dropping it
would leave the call's record wrong for good. Only an event the call's status refuses is not stored.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable, Sequence

from sqlalchemy import exc as sa_exc

from ..persistence.db import Database, DatabaseUnavailable, error_message
from . import live
from .states import NetworkEvent

log = logging.getLogger("voxplane.calls.recorder")

MAX_EVENTS = 500  # per transaction: bounds how long one holds the write lock
FIRST_PAUSE, LONGEST_PAUSE = 0.05, 2.0  # seconds between two tries of a write the database failed
CLOSE_WAIT = 10.0  # seconds closing waits for reports not yet stored
# The database failed, not the write: the same write may succeed in a moment.
DATABASE_FAILURES = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, DatabaseUnavailable)


class EventRecorder:
    def __init__(self, db: Database, stored: Callable[[], None] = lambda: None):
        """`stored` is told after each batch is stored."""
        self.db = db
        self.stored = stored
        self._waiting: list[tuple[NetworkEvent, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, event: NetworkEvent) -> None:
        """Returns once `event` is stored (however long the database takes to come back); raises
        TransitionRefused (nothing stored) if its call's status does not allow it."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((event, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())
        await done

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_EVENTS], self._waiting[MAX_EVENTS:]
            outcomes = await self._store([event for event, _ in batch])
            self.stored()
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():  # its reporter was cancelled meanwhile
                    continue
                if outcome is None:
                    done.set_result(None)
                else:
                    done.set_exception(outcome)

    async def _store(self, events: list[NetworkEvent]) -> Sequence[Exception | None]:
        """Each event's outcome, once the database has taken the batch. An error that is not the
        database's (a bug) is every event's outcome instead: trying again would fail the same way."""
        pause = FIRST_PAUSE
        while True:
            try:
                return await self.db.run_transaction(
                    functools.partial(live.apply_events, reported=events), write=True
                )
            except DATABASE_FAILURES as error:
                log.warning("storing %d network event(s) failed (%s); trying again in %.2f s",
                            len(events), error_message(error), pause)
            except Exception as error:  # noqa: BLE001 - each waiting reporter gets the error
                return [error] * len(events)
            await asyncio.sleep(pause * random.uniform(0.5, 1.0))  # jitter: replicas do not retry in step
            pause = min(pause * 2, LONGEST_PAUSE)

    async def close(self) -> None:
        """Waits for the events already reported to be stored, for CLOSE_WAIT seconds at most: a database
        that does not come back must not keep the process from stopping (the next Calls process to start
        ends the calls whose reports were lost, SERVICE_RESTART)."""
        if self._writer is None:
            return
        try:
            await asyncio.wait_for(asyncio.gather(self._writer, return_exceptions=True), CLOSE_WAIT)
        except TimeoutError:
            log.error("stopping with network events not stored: the database did not take them in %g s",
                      CLOSE_WAIT)
