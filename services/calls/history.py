"""The rules of the call history: filters, newest-first keyset pages, marks, deletion and the CSV export.

Every call is kept until the workspace deletes it. Pages and export chunks are keyset ranges over
(workspace_id, id) descending, so page 10,000 costs what page 1 costs and an export of any size
holds one chunk in memory at a time.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, bindparam, select, true, union_all
from sqlalchemy.orm import Session

from ..core import validation
from ..core.auth import Caller
from ..core.errors import Aborted, NotFound, Violations
from ..core.resources import check_etag, delete_finished, get_owned
from ..persistence import keyset
from ..persistence.base import utcnow
from ..persistence.db import AnySelect
from .models import ACTIVE_STATUSES, Call, CallLabel, CallParticipant

MAX_LABELS = 20
MAX_LABEL = 64
MAX_NOTE = 1000
LABEL_SEPARATOR = ";"  # joins a call's labels in the CSV export, so no label may hold it
EXPORT_CHUNK_ROWS = 1000

EXPORT_COLUMNS = (
    "ref", "direction", "status", "hangup_cause", "source", "destination", "caller_id", "create_time", "answer_time",
    "end_time", "duration_seconds", "starred", "archived", "read", "note", "labels",
)


@dataclass(frozen=True)
class CallFilter:
    """ListCalls / ExportCalls filters, normalised; the defaults match every call. Its repr binds page tokens."""

    direction: str | None = None  # INBOUND or OUTBOUND
    status: str | None = None
    party: str | None = None  # E.164, the source or the destination
    created_after: datetime | None = None  # at or after
    created_before: datetime | None = None
    starred: bool | None = None
    archived: bool | None = None
    read: bool | None = None
    label: str | None = None


@dataclass(frozen=True)
class Marks:
    """UpdateCallRecord: what to change; None leaves a field alone."""

    starred: bool | None = None
    archived: bool | None = None
    read: bool | None = None
    note: str | None = None
    labels: Sequence[str] | None = None


def _label(v: Violations, field: str, value: str) -> str | None:
    label = value.strip()
    if not 1 <= len(label) <= MAX_LABEL:
        v.add(field, f"must be 1 to {MAX_LABEL} characters, got {len(label)}")
    elif not label.isprintable() or LABEL_SEPARATOR in label:
        v.add(field, f"{label!r} must be printable characters without {LABEL_SEPARATOR!r}")
    else:
        return label
    return None


def checked_filter(v: Violations, raw: CallFilter, prefix: str = "filter") -> CallFilter:
    """`raw` with its number in E.164 and its label trimmed; problems go to `v` as `filter.<field>`."""
    party = validation.e164(v, f"{prefix}.party", raw.party) if raw.party else None
    label = _label(v, f"{prefix}.label", raw.label) if raw.label else None
    if raw.created_after and raw.created_before and raw.created_before <= raw.created_after:
        v.add(f"{prefix}.created_before", f"must be after {prefix}.created_after")
    return CallFilter(
        direction=raw.direction, status=raw.status, party=party, created_after=raw.created_after,
        created_before=raw.created_before, starred=raw.starred, archived=raw.archived, read=raw.read, label=label,
    )


def scope(caller: Caller, call_filter: CallFilter) -> str:
    """What a page token is bound to: the list, the workspace and the filter."""
    return f"calls/{caller.workspace_id}/{call_filter!r}"


# The filters a page or an export chunk may combine; its statements are built once per keyset.Shape.
_EQUALS = ("direction", "status", "starred", "archived", "read")
_FILTERS = (*_EQUALS, "party", "label", "created_after", "created_before")


def _shape_and_values(caller: Caller, f: CallFilter, before_id: int | None, size: int
                      ) -> tuple[keyset.Shape, dict[str, Any]]:
    values: dict[str, Any] = {name: getattr(f, name) for name in _FILTERS if getattr(f, name) is not None}
    shape = keyset.shape_of(values, before_id, size)
    return shape, {**values, "workspace_id": caller.workspace_id, "after": before_id}


def _conditions(shape: keyset.Shape) -> list[ColumnElement[bool]]:
    """The shape's conditions but `party` and `label`, which `_matching_ids` turns into index walks."""
    where: list[ColumnElement[bool]] = [Call.workspace_id == bindparam("workspace_id")]
    where += [getattr(Call, name) == bindparam(name) for name in _EQUALS if name in shape.filters]
    if "created_after" in shape.filters:
        where.append(Call.create_time >= bindparam("created_after"))
    if "created_before" in shape.filters:
        where.append(Call.create_time < bindparam("created_before"))
    return where


def _matching_ids(shape: keyset.Shape) -> AnySelect:
    """The ids of the next `size` + 1 matching calls older than `before_id`, newest first.

    Every exact-match filter is an index walk in id order, so page 1 costs the same whether it
    matches most calls or one in ten thousand: a `party` is two walks (source, destination) merged,
    and a `label` walks the labels' (label, call_id) index rather than every call of the workspace.
    """
    where = _conditions(shape)
    party: BindParameter[str] = bindparam("party")
    walks = [Call.from_party == party, Call.to_party == party] if "party" in shape.filters else [true()]
    before = shape.after
    branches = []
    for walk in walks:
        if "label" in shape.filters:
            ids = select(Call.id).join(CallLabel, CallLabel.call_id == Call.id).where(
                CallLabel.label == bindparam("label"), walk, *where
            )
            branches.append(keyset.window(ids, CallLabel.call_id, before, shape.size, newest_first=True))
        else:
            branches.append(keyset.window(select(Call.id).where(walk, *where), Call.id, before, shape.size,
                                          newest_first=True))
    if len(branches) == 1:
        return branches[0]
    merged = union_all(*(select(branch.subquery().c.id) for branch in branches)).subquery()  # IN drops repeats
    return select(merged.c.id)


@dataclass(frozen=True)
class CallPage:
    """A page of the history: rows of calls, newest first (the columns `call_proto` reads), with their
    parties and labels by call id, and the last id served if older calls follow."""

    calls: Sequence[Any]
    participants: Mapping[int, Sequence[Any]]  # rows: number, muted, on_hold, owner
    labels: Mapping[int, Sequence[str]]
    last: int | None


# A page is read as rows, not ORM objects, and its parties and labels in one plain query each: on a page
# of 20, building the objects and loading their relationships cost several times the queries themselves.
_PAGE_COLUMNS = (
    Call.id, Call.ref, Call.version, Call.from_party, Call.to_party, Call.caller_id, Call.device_id, Call.direction,
    Call.status, Call.hangup_cause, Call.muted, Call.on_hold, Call.recording, Call.create_time, Call.update_time,
    Call.call_metadata.label("call_metadata"),  # its column is "metadata"; Core rows are keyed by column
    Call.webhook, Call.timeout_seconds, Call.starred, Call.archived, Call.read, Call.note, Call.answer_time,
    Call.end_time,
)


@functools.lru_cache(maxsize=512)
def _page_queries(shape: keyset.Shape) -> tuple[AnySelect, AnySelect, AnySelect]:
    """The page's calls, their parties and their labels, for one shape. The parties and labels are
    those of the matching ids again (one row more than the page, at most), so no list of ids is bound."""
    ids = _matching_ids(shape)
    calls = keyset.window(select(*_PAGE_COLUMNS).where(Call.id.in_(ids)), Call.id,
                          shape.after, shape.size, newest_first=True)
    parties = select(CallParticipant.call_id, CallParticipant.number, CallParticipant.muted, CallParticipant.on_hold,
                     CallParticipant.owner).where(CallParticipant.call_id.in_(ids)).order_by(CallParticipant.id)
    labels = select(CallLabel.call_id, CallLabel.label).where(CallLabel.call_id.in_(ids)).order_by(CallLabel.label)
    return calls, parties, labels


def list_calls(session: Session, caller: Caller, call_filter: CallFilter, before_id: int | None, size: int) -> CallPage:
    """One page of the history."""
    shape, values = _shape_and_values(caller, call_filter, before_id, size)
    calls_query, parties_query, labels_query = _page_queries(shape)
    connection = session.connection()  # Core rows straight off the cursor, without the ORM's layer
    calls, last = keyset.cut(connection.execute(calls_query, values).all(), size, lambda row: row.id)
    participants: dict[int, list[Any]] = {}
    labels: dict[int, list[str]] = {}
    if calls:
        for row in connection.execute(parties_query, values):
            participants.setdefault(row.call_id, []).append(row)
        for call_id, label in connection.execute(labels_query, values):
            labels.setdefault(call_id, []).append(label)
    return CallPage(calls, participants, labels, last)


# --- marks ----------------------------------------------------------------------------------


def checked_marks(v: Violations, marks: Marks, prefix: str = "") -> Marks:
    """`marks` with labels trimmed and de-duplicated; problems go to `v`, named `<prefix><field>`."""
    if marks.note is not None and len(marks.note) > MAX_NOTE:
        v.add(f"{prefix}note", f"must be at most {MAX_NOTE:,} characters, got {len(marks.note):,}")
    labels = marks.labels
    if labels is not None:
        if len(labels) > MAX_LABELS:
            v.add(f"{prefix}labels", f"must hold at most {MAX_LABELS} labels, got {len(labels)}")
        checked = [_label(v, f"{prefix}labels[{i}]", label) for i, label in enumerate(labels)]
        labels = list(dict.fromkeys(label for label in checked if label))  # a label twice is the label once
    return Marks(marks.starred, marks.archived, marks.read, marks.note, labels)


def _apply(session: Session, call: Call, marks: Marks) -> None:
    for name in ("starred", "archived", "read", "note"):
        value = getattr(marks, name)
        if value is not None:
            setattr(call, name, value)
    if marks.labels is not None:
        kept = {label.label: label for label in call.labels if label.label in marks.labels}
        call.labels = sorted(
            (kept.get(name) or CallLabel(label=name) for name in marks.labels), key=lambda label: label.label
        )
    call.update_time = utcnow()  # every mark moves update_time and the version (the etag)


def update_record(session: Session, caller: Caller, ref: str, marks: Marks, etag: str) -> Call:
    v = Violations()
    if not ref:
        v.add("ref", "is required")
    marks = checked_marks(v, marks)
    v.raise_if_any()
    call = get_owned(session, Call, caller, ref, etag=etag)
    _apply(session, call, marks)
    session.flush()
    return call


def update_records(session: Session, caller: Caller, updates: Sequence[tuple[str, Marks, str]]) -> list[Call]:
    """Marks up to 1,000 calls, all or none (the RPC's transaction); returns them in the updates' order.
    Each update is (ref, marks, etag).

    Violations are named `requests[i].<field>`; the first ref that is not the caller's is NOT_FOUND, the
    first stale etag ABORTED (checked as of the batch's start).
    """
    validation.check_batch_size("requests", len(updates), "updates")
    v = Violations()
    checked: list[tuple[str, Marks, str]] = []
    for i, (ref, marks, etag) in enumerate(updates):
        if not ref:
            v.add(f"requests[{i}].ref", "is required")
        checked.append((ref, checked_marks(v, marks, f"requests[{i}]."), etag))
    v.raise_if_any()
    refs = list(dict.fromkeys(ref for ref, _, _ in checked))
    by_ref = {
        call.ref: call
        for call in session.scalars(select(Call).where(Call.workspace_id == caller.workspace_id, Call.ref.in_(refs)))
    }
    for i, (ref, _, etag) in enumerate(checked):
        if ref not in by_ref:
            raise NotFound(f"requests[{i}]: No call has the ref {ref!r}.")
        try:
            check_etag(by_ref[ref], etag)
        except Aborted as stale:
            raise Aborted(f"requests[{i}]: {stale}") from None
    for ref, marks, _ in checked:  # the same ref twice: its updates apply in order
        _apply(session, by_ref[ref], marks)
    session.flush()
    return [by_ref[ref] for ref, _, _ in checked]


def delete_records(session: Session, caller: Caller, refs: Sequence[str]) -> None:
    """Deletes up to 1,000 ended calls, all or none: an unknown ref is NOT_FOUND, a running call
    FAILED_PRECONDITION, each naming the first such ref."""
    delete_finished(
        session, Call, caller, refs, running=ACTIVE_STATUSES,
        rule="only ended calls can be deleted (hang it up or cancel it first)",
    )


# --- CSV export -------------------------------------------------------------------------------

_EXPORT_COLUMNS = (
    Call.id, Call.ref, Call.direction, Call.status, Call.hangup_cause, Call.from_party, Call.to_party,
    Call.caller_id, Call.create_time, Call.answer_time, Call.end_time, Call.starred, Call.archived, Call.read,
    Call.note,
)


@functools.lru_cache(maxsize=64)
def _export_queries(shape: keyset.Shape) -> tuple[AnySelect, AnySelect]:
    """An export chunk's rows and their labels, for one shape."""
    ids = _matching_ids(shape)
    rows = keyset.window(select(*_EXPORT_COLUMNS).where(Call.id.in_(ids)), Call.id,
                         shape.after, shape.size, newest_first=True)
    labels = select(CallLabel.call_id, CallLabel.label).where(CallLabel.call_id.in_(ids)).order_by(CallLabel.label)
    return rows, labels


def _utc(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _seconds(answer: datetime | None, end: datetime | None) -> str:
    if answer is None or end is None:
        return "0"
    return f"{max(0.0, (end - answer).total_seconds()):.3f}".rstrip("0").rstrip(".")


def export_header() -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(EXPORT_COLUMNS)
    return out.getvalue().encode()


def export_chunk(
    session: Session, caller: Caller, call_filter: CallFilter, before_id: int | None, size: int = EXPORT_CHUNK_ROWS
) -> tuple[bytes, int | None]:
    """CSV rows of the next `size` calls older than `before_id` (None: the newest), and the id to go on
    from, None when the history is exhausted. Plain columns, no ORM objects: two queries a chunk."""
    shape, values = _shape_and_values(caller, call_filter, before_id, size)
    rows_query, labels_query = _export_queries(shape)
    connection = session.connection()  # Core rows straight off the cursor, without the ORM's layer
    rows, last_id = keyset.cut(connection.execute(rows_query, values).all(), size, lambda row: row[0])
    if not rows:
        return b"", None
    labels: dict[int, list[str]] = {}
    for call_id, label in connection.execute(labels_query, values):
        labels.setdefault(call_id, []).append(label)
    out = io.StringIO()
    csv.writer(out).writerows(
        (
            ref, direction, status, cause or "", from_party, to_party, caller_id, _utc(created), _utc(answered),
            _utc(ended), _seconds(answered, ended), "true" if starred else "false", "true" if archived else "false",
            "true" if read else "false", note, LABEL_SEPARATOR.join(labels.get(call_id, ())),
        )
        for (call_id, ref, direction, status, cause, from_party, to_party, caller_id, created, answered, ended,
             starred, archived, read, note) in rows
    )
    return out.getvalue().encode(), last_id
