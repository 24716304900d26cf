"""Writing events in the transaction of their change, and reading them back in an order that is safe to
resume from.

The order is (`txid`, `id`). On SQLite writers take turns, so ids are assigned in commit order and
`txid` is 0. On PostgreSQL, ids are assigned when a row is inserted, not when it commits: a transaction
that inserted id 7 may commit after one that inserted id 8, and a reader that saw 8 and resumed "after
8" would never see 7. So each row carries its transaction's id, and a reader only returns rows of
transactions older than the oldest one still running (the snapshot's xmin): every such transaction has
finished, so no row can appear behind the reader's position any more. A long transaction holds events
back for as long as it runs; none is lost or repeated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    tuple_,
)
from sqlalchemy.orm import Session

from ..persistence.base import new_ref, table_of, utcnow
from ..persistence.listen import Listener
from .models import Event

EVENTS = table_of(Event)
# On PostgreSQL every commit that wrote events notifies this channel with each topic it wrote (migration
# 0015's trigger): readers listen to it to wake at once, and poll only every SAFETY_POLL seconds.
NOTIFY_CHANNEL = "voxplane_events"
SAFETY_POLL = 1.0


def poll_interval(listener: Listener | None, unheard: float) -> float:
    """Seconds a reader of the outbox waits between two reads: SAFETY_POLL while `listener` hears every
    process's commits, else `unheard` (SQLite, or PostgreSQL while the listener reconnects)."""
    return SAFETY_POLL if listener is not None and listener.listening else unheard
_events = EVENTS.c
# The writing transaction's id, as a bigint (xid8 has no cast to bigint but through text).
_PG_TXID: ColumnElement[int] = literal_column("pg_current_xact_id()::text::bigint")
_PG_HORIZON = text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
NO_HORIZON = 2**63 - 1  # SQLite: every committed row is final


@dataclass(frozen=True, order=True)
class Position:
    """A place in the outbox: after the row (`txid`, `id`). The start is (0, 0)."""

    txid: int = 0
    id: int = 0


START = Position()


@dataclass(frozen=True)
class NewEvent:
    workspace_id: int
    topic: str
    resource_ref: str
    sequence: int
    type: str
    network_time: datetime
    direction: str
    webhook: str | None
    payload: dict[str, Any]


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def append(session: Session, events: Sequence[NewEvent]) -> list[str]:
    """Stores `events` in the session's transaction (one executemany INSERT); returns their event ids."""
    if not events:
        return []
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {
            "ref": new_ref(), "workspace_id": e.workspace_id, "topic": e.topic, "resource_ref": e.resource_ref,
            "sequence": e.sequence, "type": e.type, "network_time": e.network_time, "create_time": now,
            "direction": e.direction, "webhook": e.webhook, "payload": e.payload,
        }
        for e in events
    ]
    statement = insert(EVENTS)
    if _is_postgresql(session):
        statement = statement.values(txid=_PG_TXID)
    else:
        for row in rows:
            row["txid"] = 0
    session.execute(statement, rows)
    return [row["ref"] for row in rows]


def horizon(session: Session) -> int:
    """Rows of a `txid` below this are final: no transaction that could still add one is running."""
    if not _is_postgresql(session):
        return NO_HORIZON
    value = session.execute(_PG_HORIZON).scalar_one()
    return int(value)


def read(
    session: Session, after: Position, *, limit: int, workspace_id: int | None = None, topic: str | None = None,
    resource_ref: str | None = None,
) -> tuple[list[Event], Position]:
    """Up to `limit` final events after `after`, in order, of one workspace (None: every workspace), and
    optionally of one topic and resource. Returns them and the position a reader may resume from: the
    last one's, or, when there are none, the furthest point known final (a heartbeat's cursor), so that
    an idle reader does not scan again what it has passed."""
    bound = horizon(session)
    if bound == NO_HORIZON:  # SQLite: txid is 0, and an id range is what its index can seek (an OR is not)
        query = select(Event).where(_events.txid == 0, _events.id > after.id)
    else:
        query = select(Event).where(_events.txid < bound, tuple_(_events.txid, _events.id) > (after.txid, after.id))
    if workspace_id is not None:
        query = query.where(_events.workspace_id == workspace_id)
    if topic is not None:
        query = query.where(_events.topic == topic)
    if resource_ref is not None:
        query = query.where(_events.resource_ref == resource_ref)
    rows = list(session.scalars(query.order_by(_events.txid, _events.id).limit(limit)))
    if rows:
        return rows, Position(rows[-1].txid, rows[-1].id)
    if bound == NO_HORIZON:
        newest = session.execute(select(_events.id).order_by(_events.id.desc()).limit(1)).scalar()
        return rows, max(after, Position(0, newest or 0))
    # Every txid below the bound is final, so "after (bound - 1, any id)" skips nothing still to come.
    return rows, max(after, Position(bound - 1, NO_HORIZON))


def backlog(session: Session, after: Position) -> tuple[int, datetime | None]:
    """How many events are stored after `after`, final or not, and when the oldest of them was: a
    reader's lag behind the outbox."""
    if _is_postgresql(session):
        where = tuple_(_events.txid, _events.id) > (after.txid, after.id)
    else:
        where = (_events.txid == 0) & (_events.id > after.id)
    count, oldest = session.execute(select(func.count(), func.min(_events.create_time)).where(where)).one()
    return count, oldest


def latest_sequence(session: Session, topic: str, resource_refs: Sequence[str]) -> dict[str, int]:
    """The last stored sequence of each resource that has events."""
    found = session.execute(
        select(_events.resource_ref, func.max(_events.sequence))
        .where(_events.topic == topic, _events.resource_ref.in_(set(resource_refs)))
        .group_by(_events.resource_ref)
    )
    return {ref: sequence for ref, sequence in found}


PRUNE = delete(EVENTS).where(_events.create_time < bindparam("before"))


def prune(session: Session, before: datetime) -> int:
    """Deletes the events stored before `before`; returns how many."""
    result: CursorResult[Any] = session.execute(PRUNE, {"before": before})  # type: ignore[assignment]
    return result.rowcount
