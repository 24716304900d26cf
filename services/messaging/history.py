"""The rules of the message history: filters, newest-first keyset pages, deletion and the CSV export,
over SMS and faxes alike, as the call history does (services/calls/history.py) for calls."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import ColumnElement, select, true, union_all
from sqlalchemy.orm import Session

from ..core import validation
from ..core.auth import Caller
from ..core.errors import Violations
from ..core.resources import delete_finished
from ..persistence import keyset
from ..persistence.db import AnySelect
from .models import UNDER_WAY_STATUSES, Message

EXPORT_CHUNK_ROWS = 1000
EXPORT_COLUMNS = (
    "ref", "type", "direction", "status", "source", "destination", "encoding", "num_segments", "body", "filename",
    "page_count", "failure_reason", "send_time", "create_time", "update_time",
)


@dataclass(frozen=True)
class MessageFilter:
    """ListMessages / ExportMessages filters, normalised; its repr binds page tokens."""

    direction: str | None = None
    type: str | None = None
    status: str | None = None
    number: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def checked_filter(v: Violations, raw: MessageFilter) -> MessageFilter:
    number = validation.e164(v, "filter.number", raw.number) if raw.number else None
    if raw.created_after and raw.created_before and raw.created_before <= raw.created_after:
        v.add("filter.created_before", "must be after filter.created_after")
    return MessageFilter(raw.direction, raw.type, raw.status, number, raw.created_after, raw.created_before)


def scope(caller: Caller, f: MessageFilter) -> str:
    return f"messages/{caller.workspace_id}/{f!r}"


def _conditions(caller: Caller, f: MessageFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Message.workspace_id == caller.workspace_id]
    for column, wanted in ((Message.direction, f.direction), (Message.type, f.type), (Message.status, f.status)):
        if wanted:
            where.append(column == wanted)
    if f.created_after:
        where.append(Message.create_time >= f.created_after)
    if f.created_before:
        where.append(Message.create_time < f.created_before)
    return where


def _matching_ids(caller: Caller, f: MessageFilter, before_id: int | None, size: int) -> AnySelect:
    """The ids of the next `size` + 1 matching messages older than `before_id`, newest first: a `number`
    is two index walks (source, destination) merged, so a sparse filter costs what a dense one does."""
    where = _conditions(caller, f)
    walks = [Message.source == f.number, Message.destination == f.number] if f.number else [true()]
    branches = [keyset.window(select(Message.id).where(walk, *where), Message.id, before_id, size, newest_first=True)
                for walk in walks]
    if len(branches) == 1:
        return branches[0]
    merged = union_all(*(select(branch.subquery().c.id) for branch in branches)).subquery()
    return select(merged.c.id)


def list_messages(
    session: Session, caller: Caller, f: MessageFilter, before_id: int | None, size: int
) -> tuple[Sequence[Message], int | None]:
    query = select(Message).where(Message.id.in_(_matching_ids(caller, f, before_id, size)))
    return keyset.page(session, query, Message.id, before_id, size, newest_first=True)


def delete_messages(session: Session, caller: Caller, refs: Sequence[str]) -> None:
    """Deletes up to 1,000 messages that are done, all or none."""
    delete_finished(
        session, Message, caller, refs, running=UNDER_WAY_STATUSES,
        rule="only messages that are done can be deleted (cancel a scheduled one first)",
    )


_EXPORT_ROW = select(
    Message.id, Message.ref, Message.type, Message.direction, Message.status, Message.source, Message.destination,
    Message.encoding, Message.num_segments, Message.body, Message.filename, Message.page_count,
    Message.failure_reason, Message.send_time, Message.create_time, Message.update_time,
)


def _utc(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z") if value else ""


def export_header() -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(EXPORT_COLUMNS)
    return out.getvalue().encode()


def export_chunk(
    session: Session, caller: Caller, f: MessageFilter, before_id: int | None, size: int = EXPORT_CHUNK_ROWS
) -> tuple[bytes, int | None]:
    connection = session.connection()
    query = keyset.window(_EXPORT_ROW.where(Message.id.in_(_matching_ids(caller, f, before_id, size))),
                          Message.id, before_id, size, newest_first=True)
    rows, last_id = keyset.cut(connection.execute(query).all(), size, lambda row: row[0])
    if not rows:
        return b"", None
    out = io.StringIO()
    csv.writer(out).writerows(
        (*row[1:13], _utc(row[13]), _utc(row[14]), _utc(row[15])) for row in rows
    )
    return out.getvalue().encode(), last_id
