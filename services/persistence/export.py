"""Streaming an export of any size in constant memory: one chunk per database round trip."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable

from sqlalchemy.orm import Session

from .db import Database


async def csv_chunks(
    db: Database, header: bytes, chunk: Callable[..., tuple[bytes, int | None]]
) -> AsyncIterator[bytes]:
    """`header`, then the data `chunk(session, before_id=...)` returns (its rows before that id, and the id
    to go on from, None at the end), each chunk in a short read transaction of its own."""
    before: int | None = None
    while True:
        read: Callable[[Session], tuple[bytes, int | None]] = functools.partial(chunk, before_id=before)
        data, before = await db.run_transaction(read, write=False)
        if header:
            data, header = header + data, b""
        if data:
            yield data
        if before is None:
            break
