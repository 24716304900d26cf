"""Stores what the network reports about running calls, many events to a transaction.

Every ring, answer and hangup is a status change that must be stored before the gateway goes on with
the call. One transaction per event would make the commit, and the hop to a database thread, the cost
of a call; instead, events that arrive while a transaction runs wait and go together in the next one.
Nothing waits on purpose: a lone event is written at once.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

from ..persistence.db import Database
from . import live
from .states import NetworkEvent

MAX_EVENTS = 500  # per transaction: bounds how long one holds the write lock


class EventRecorder:
    def __init__(self, db: Database):
        self.db = db
        self._waiting: list[tuple[NetworkEvent, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, event: NetworkEvent) -> None:
        """Returns once `event` is stored; raises TransitionRefused (nothing stored) if its call's status
        does not allow it."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((event, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())
        await done

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_EVENTS], self._waiting[MAX_EVENTS:]
            events = [event for event, _ in batch]
            try:
                outcomes: Sequence[Exception | None] = await self.db.run_transaction(
                    functools.partial(live.apply_events, events=events), write=True
                )
            except Exception as error:  # noqa: BLE001 - each waiting reporter gets the error
                outcomes = [error] * len(batch)
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():  # its reporter was cancelled meanwhile
                    continue
                if outcome is None:
                    done.set_result(None)
                else:
                    done.set_exception(outcome)

    async def close(self) -> None:
        """Waits for the events already reported to be stored."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
