"""Many small writes of concurrent requests, grouped into one transaction.

One transaction per request makes the commit, and the hop to a database thread, the cost of each
request; instead, the items that arrive while a transaction runs wait and go together in the next one
(as Calls' EventRecorder does for network events). Nothing waits on purpose: a lone item is written at
once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from .db import Database

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class WriteBatcher(Generic[Item, Outcome]):
    """`write(session, items)` returns one outcome per item: a result, or an exception that item gets."""

    def __init__(self, db: Database, write: Callable[[Session, Sequence[Item]], Sequence[Outcome | Exception]],
                 max_items: int = 500):
        self.db = db
        self.write = write
        self.max_items = max_items  # per transaction: bounds how long one holds the write lock
        self._waiting: list[tuple[Item, asyncio.Future[Outcome]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Outcome:
        """Returns `item`'s outcome once its transaction committed (or raises the error it got)."""
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return await done

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[: self.max_items], self._waiting[self.max_items:]
            items = [item for item, _ in batch]

            def write(session: Session, items: list[Item] = items) -> Sequence[Outcome | Exception]:
                return self.write(session, items)

            try:
                outcomes: Sequence[Outcome | Exception] = await self.db.run_transaction(write, write=True)
            except Exception as error:  # noqa: BLE001 - each waiting submitter gets the error
                outcomes = [error] * len(batch)
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():  # its submitter was cancelled meanwhile
                    continue
                if isinstance(outcome, Exception):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)

    async def close(self) -> None:
        """Waits for the items already submitted to be written."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
