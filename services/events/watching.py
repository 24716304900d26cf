"""What every Watch…Events stream shares, whatever its topic (calls, messages): the cursor it resumes
from (sealed, and good only for its workspace and topic), the heartbeat interval, where a stream
starts, and the pruning of events older than they are kept.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format
from sqlalchemy.orm import Session

from ..core import config
from ..core.convert import ProtoEnum, timedelta_of, timestamp
from ..core.errors import InvalidArgument, Violations
from ..core.paging import InvalidToken, PageTokens
from ..persistence.base import utcnow
from ..persistence.db import Database
from . import outbox, retention
from .feed import EventFeed
from .models import Event
from .outbox import Position

log = logging.getLogger("voxplane.events")

DEFAULT_HEARTBEAT, MIN_HEARTBEAT, MAX_HEARTBEAT = 15.0, 1.0, 60.0  # seconds


@dataclass(frozen=True)
class Cursor:
    """Where a stream stopped: after `position`, which was final at `time` (when its event was stored)."""

    position: Position
    time: datetime


def checked_heartbeat(interval: timedelta | None) -> float:
    """The heartbeat interval in seconds: 1 to 60, None meaning 15."""
    if interval is None:
        return DEFAULT_HEARTBEAT
    seconds = interval.total_seconds()
    if not MIN_HEARTBEAT <= seconds <= MAX_HEARTBEAT:
        raise InvalidArgument.of("heartbeat_interval", f"must be 1 to 60 seconds (unset means 15), got {seconds:g}s")
    return seconds


def _scope(topic: str, workspace_id: int) -> str:
    return f"{topic}-events/{workspace_id}"


def cursor_token(tokens: PageTokens, topic: str, workspace_id: int, cursor: Cursor) -> str:
    """A cursor as callers see it: opaque, and only good for the workspace's streams of `topic`."""
    position = cursor.position
    return tokens.issue(_scope(topic, workspace_id), f"{position.txid}:{position.id}:{cursor.time.timestamp():.6f}")


def cursor_of(tokens: PageTokens, topic: str, workspace_id: int, token: str) -> Cursor | None:
    """The cursor a Watch request resumes after; None for none."""
    if not token:
        return None
    try:
        txid, row_id, seconds = tokens.unseal(_scope(topic, workspace_id), token).split(":")
        return Cursor(Position(int(txid), int(row_id)), datetime.fromtimestamp(float(seconds), UTC))
    except (InvalidToken, ValueError):
        raise InvalidArgument.of(
            "cursor", "is not a cursor a stream of this workspace sent; watch again without one"
        ) from None


def start(session: Session, topic: str, one_resource: bool, cursor: Cursor | None, kept: timedelta,
          start_over: str) -> Cursor:
    """Where a stream starts: after `cursor` if it is not older than the events `kept` (else OUT_OF_RANGE
    saying `start_over`); without one, from the first event of one resource, or from now for all."""
    if cursor is not None:
        retention.check_resumable(cursor.time, kept, start_over)
        return cursor
    now = utcnow()
    if one_resource:
        return Cursor(outbox.START, now)
    _, newest = outbox.read(session, outbox.START, limit=0, topic=topic)
    return Cursor(newest, now)


async def keep_pruning(db: Database) -> None:
    """Every PRUNE_INTERVAL, from the start: deletes the events older than they are kept (any topic)."""
    while True:
        prune = functools.partial(retention.prune, retention=config.settings().event_retention)
        try:
            pruned = await db.run_transaction(prune, write=True)
        except Exception:  # noqa: BLE001 - the next round tries again
            log.exception("pruning old events failed")
        else:
            if pruned:
                log.info("pruned %d event(s) older than they are kept", pruned)
        await asyncio.sleep(retention.PRUNE_INTERVAL)


async def stream(
    db: Database, feed: EventFeed, replies: StreamReplies, workspace_id: int, request: Any, resource_ref: str,
    start: Callable[[Session, Cursor | None, timedelta], Cursor],
) -> AsyncIterator[Any]:
    """A Watch…Events RPC: the responses for `request` (its cursor and heartbeat interval), from where
    `start(session, cursor, kept)` says (which checks `resource_ref` is the caller's), until cancelled."""
    idle, cursor = replies.heartbeat_interval(request), replies.cursor(workspace_id, request)
    kept = config.settings().event_retention
    begin = await db.run_transaction(lambda s: start(s, cursor, kept), write=False)
    async for message in feed.watch(
        workspace_id, begin.position, begin.time, replies.event_reply,
        functools.partial(replies.heartbeat_reply, workspace_id), idle, resource_ref or None,
    ):
        yield message


class StreamReplies:
    """The replies of one Watch…Events RPC, given its proto types: each event row as its event message in
    a response with its cursor, heartbeats, and the request's cursor and heartbeat interval read back.
    One per servicer: the feed renders a row once for every watcher with the same `event_reply`."""

    def __init__(self, tokens: PageTokens, topic: str, response_type: Any, event_type: Any, heartbeat_type: Any,
                 resource_field: str, event_types: ProtoEnum[Any]):
        self.tokens, self.topic = tokens, topic
        self.response_type, self.event_type, self.heartbeat_type = response_type, event_type, heartbeat_type
        self.resource_field, self.event_types = resource_field, event_types

    def event(self, row: Event) -> Any:
        """An outbox row as the event message it stores: its columns, and its payload (proto JSON)."""
        message = self.event_type(
            event_id=row.ref, sequence=row.sequence, type=self.event_types.number(row.type),
            network_time=timestamp(row.network_time), **{self.resource_field: row.resource_ref},
        )
        json_format.ParseDict(row.payload, message, ignore_unknown_fields=True)
        return message

    def event_reply(self, row: Event) -> Any:
        cursor = Cursor(Position(row.txid, row.id), row.create_time)
        return self.response_type(cursor=cursor_token(self.tokens, self.topic, row.workspace_id, cursor),
                                  event=self.event(row))

    def heartbeat_reply(self, workspace_id: int, position: Position, time: datetime) -> Any:
        return self.response_type(
            cursor=cursor_token(self.tokens, self.topic, workspace_id, Cursor(position, time)),
            heartbeat=self.heartbeat_type(time=timestamp(datetime.now(UTC))),
        )

    def cursor(self, workspace_id: int, request: Any) -> Cursor | None:
        return cursor_of(self.tokens, self.topic, workspace_id, request.cursor)

    @staticmethod
    def heartbeat_interval(request: Any) -> float:
        v = Violations()
        interval = timedelta_of(request, "heartbeat_interval", v)
        v.raise_if_any()
        return checked_heartbeat(interval)
