"""LISTEN on a PostgreSQL channel, from an event loop: a wake-up for readers of a table other processes
write (the outbox), never the truth, which stays the table itself.

One dedicated psycopg connection per channel and event loop, in autocommit. Each notification's payload
goes to the subscribers of that payload (and to those of every payload); after every (re)connect every
subscriber is told too, since what was sent while no one listened is lost. A lost connection is opened
again after RETRY_PAUSE; meanwhile `listening` is False, so readers fall back to their fast polls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("voxplane.persistence.listen")

RETRY_PAUSE = 1.0  # seconds between two attempts to (re)open the connection


class Listener:
    """The notifications of one channel, handed to subscribers on the loop that made the listener."""

    def __init__(self, conninfo: str, channel: str, connect_timeout: int):
        self._conninfo, self._channel, self._connect_timeout = conninfo, channel, connect_timeout
        self._subscribers: dict[str | None, set[Callable[[], None]]] = {}
        self.listening = False
        self._task: asyncio.Task[None] = asyncio.get_running_loop().create_task(self._run())

    def subscribe(self, payload: str | None, wake: Callable[[], None]) -> None:
        """Calls `wake()` on each notification with `payload` (None: with any), and after each reconnect."""
        self._subscribers.setdefault(payload, set()).add(wake)

    def unsubscribe(self, payload: str | None, wake: Callable[[], None]) -> None:
        self._subscribers.get(payload, set()).discard(wake)

    def _wake(self, payload: str | None) -> None:
        if payload is None:
            chosen = [wake for wakes in self._subscribers.values() for wake in wakes]
        else:
            chosen = [*self._subscribers.get(payload, ()), *self._subscribers.get(None, ())]
        for wake in chosen:
            wake()

    async def _run(self) -> None:
        import psycopg  # PostgreSQL only

        while True:
            try:
                connection: Any = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=self._connect_timeout)
                async with connection:
                    await connection.execute(f"LISTEN {self._channel}")
                    self.listening = True
                    self._wake(None)  # whatever was sent while no one listened
                    async for notification in connection.notifies():
                        self._wake(notification.payload)
            except (psycopg.Error, OSError) as error:  # the database away, restarted, or refusing: try again
                if self.listening:
                    log.warning("listening on %s stopped (%s); trying again", self._channel, error)
            finally:
                self.listening = False
            await asyncio.sleep(RETRY_PAUSE)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
