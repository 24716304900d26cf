"""The durable queue: which messages are due, claiming them so that one worker alone sends each, and
storing what became of them.

A message waits with a `due_time` (now, its send time, a fax's next attempt). A worker claims due rows
in one transaction: SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL, so two replicas never claim one row
(SQLite has one writer at a time); the claim makes it SENDING, names the worker, and sets `due_time` to
the end of the claim's lease. A worker that stops mid-send leaves its rows SENDING with a lease that
runs out: then any worker claims them again and hands them off again, which the carrier answers
idempotently per ref. Every outcome is stored only while the claim is still the worker's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from ..events import outbox
from ..events.outbox import NewEvent
from ..persistence.base import table_of, utcnow
from ..persistence.tenancy import Workspace
from . import events, sending, states
from .models import WAITING_STATUSES, FaxDocument, Message, StatusChange

MAX_FAX_ATTEMPTS = 5  # the first and 4 retries


@dataclass(frozen=True)
class Claimed:
    """What a worker needs of a message it claimed."""

    ref: str
    type: str
    workspace_id: int
    source: str
    destination: str
    body: str
    page_count: int
    attempt: int


def next_due(session: Session) -> datetime | None:
    return session.scalar(select(func.min(Message.due_time)))


_M = table_of(Message)
_CHANGES = table_of(StatusChange)
# What an UPDATE returns of each row it changed: enough for its event (events.MessageFacts) and a Claimed.
_FACTS = (_M.c.id, _M.c.ref, _M.c.workspace_id, _M.c.type, _M.c.direction, _M.c.status, _M.c.source,
          _M.c.destination, _M.c.body, _M.c.failure_reason, _M.c.webhook, _M.c.event_sequence, _M.c.page_count,
          _M.c.attempts)


def _changed(session: Session, rows: Sequence[Any], at: dict[str, datetime] | datetime) -> list[NewEvent]:
    """The status changes and events of rows an UPDATE just moved (RETURNING _FACTS): the changes stored,
    the events returned for the caller to append with the others of its transaction."""
    if not rows:
        return []
    time_of = (lambda row: at[row.ref]) if isinstance(at, dict) else (lambda row: at)
    session.execute(insert(_CHANGES), [{"message_id": r.id, "status": r.status, "time": time_of(r)} for r in rows])
    return [events.event(cast(events.MessageFacts, r), time_of(r)) for r in rows]


def _moved(**values: Any) -> dict[str, Any]:
    """The values of an UPDATE that changes a message's status: a new event, a new version (its etag)."""
    return {"event_sequence": _M.c.event_sequence + 1, "version": _M.c.version + 1, **values}


def claim(session: Session, worker: str, lease: timedelta, limit: int) -> list[Claimed]:
    """Claims up to `limit` due messages for `worker`: those waiting become SENDING; those SENDING whose
    claim lapsed (their worker stopped) are the worker's now, and handed off again. Core statements, not
    the ORM: this runs for every message sent."""
    now = utcnow()
    due = select(_M.c.id).where(_M.c.due_time <= now).order_by(_M.c.due_time).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    ids = list(session.scalars(due))
    if not ids:
        return []
    claimed = {"claimed_by": worker, "due_time": now + lease, "update_time": now}
    fresh = session.execute(
        update(_M).where(_M.c.id.in_(ids), _M.c.status.in_(WAITING_STATUSES))
        .values(_moved(status="SENDING", attempts=_M.c.attempts + 1, **claimed)).returning(*_FACTS)
    ).all()
    retaken = session.execute(
        update(_M).where(_M.c.id.in_(ids), _M.c.status == "SENDING")
        .values(version=_M.c.version + 1, **claimed).returning(*_FACTS)
    ).all() if len(fresh) < len(ids) else []
    outbox.append(session, _changed(session, fresh, now))
    return [Claimed(r.ref, r.type, r.workspace_id, r.source, r.destination, r.body, r.page_count, r.attempts)
            for r in [*fresh, *retaken]]


def _locked(session: Session, query: Any) -> Any:
    """`query` locking its rows on PostgreSQL until the transaction ends, so that a receipt and the
    hand-off's answer for one message take turns (each then reads what the other wrote)."""
    return query.with_for_update() if session.get_bind().dialect.name == "postgresql" else query


def _still_mine(session: Session, worker: str, refs: Sequence[str]) -> dict[str, Message]:
    rows = session.scalars(_locked(session, select(Message).where(
        Message.ref.in_(refs), Message.claimed_by == worker, Message.status == "SENDING"
    ).order_by(Message.id)))
    return {m.ref: m for m in rows}


def _settle(message: Message, status: str, at: datetime, reason: str = "") -> NewEvent:
    message.claimed_by = None
    message.due_time = None
    return states.record(message, status, at, reason)


@dataclass(frozen=True)
class HandedOff:
    """A carrier's answer to one SMS: SENT, or FAILED with why."""

    ref: str
    accepted: bool
    reason: str = ""


def _settled(session: Session, worker: str, refs: Sequence[str], status: str, at: datetime, reason: str = ""
             ) -> list[NewEvent]:
    """The messages `refs` still SENDING on `worker`'s claim take `status`, their claim over."""
    if not refs:
        return []
    values = _moved(status=status, claimed_by=None, due_time=None, update_time=at)
    if reason:
        values["failure_reason"] = reason[:255]
    rows = session.execute(
        update(_M).where(_M.c.ref.in_(refs), _M.c.claimed_by == worker, _M.c.status == "SENDING")
        .values(values).returning(*_FACTS)
    ).all()
    return _changed(session, rows, at)


def handed_off(session: Session, items: Sequence[tuple[str, HandedOff]]) -> list[None]:
    """Stores the carrier's answers, each (worker, answer), for the claims still the workers'."""
    now = utcnow()
    new_events: list[NewEvent] = []
    for worker in {w for w, _ in items}:
        answers = [a for w, a in items if w == worker]
        new_events += _settled(session, worker, [a.ref for a in answers if a.accepted], "SENT", now)
        for refused in (a for a in answers if not a.accepted):  # rare: one statement each, for its reason
            new_events += _settled(session, worker, [refused.ref], "FAILED", now, refused.reason)
    outbox.append(session, new_events)
    return [None] * len(items)


@dataclass(frozen=True)
class OnNet:
    """An SMS to a number of the deployment: who holds it, and where its events go."""

    ref: str
    workspace_ref: str
    webhook: str | None


def delivered_on_net(session: Session, worker: str, delivery: OnNet) -> None:
    """The outbound message SENT and DELIVERED, and RECEIVED by the number's workspace, in one transaction."""
    message = _still_mine(session, worker, [delivery.ref]).get(delivery.ref)
    workspace_id = session.scalar(select(Workspace.id).where(Workspace.ref == delivery.workspace_ref))
    if message is None or workspace_id is None:
        return
    now = utcnow()
    first = _settle(message, "SENT", now)
    second = states.record(message, "DELIVERED", now)
    session.flush()
    outbox.append(session, [first, second])
    sending.receive(session, workspace_id, message.source, message.destination, message.body, delivery.webhook, now)


def receipts(session: Session, items: Sequence[tuple[str, str, datetime, str]]) -> list[None]:
    """Stores delivery receipts, each (ref, status, time, reason): a SENT SMS takes the receipt's status; one
    still SENDING (the receipt overtook the hand-off's answer) is SENT first. Any other, final already, is
    left as it is: a receipt never moves a message back."""
    at = {ref: time for ref, _, time, _ in items}
    new_events: list[NewEvent] = []
    overtaken = session.execute(
        update(_M).where(_M.c.ref.in_(list(at)), _M.c.type == "SMS", _M.c.status == "SENDING")
        .values(_moved(status="SENT", claimed_by=None, due_time=None, update_time=utcnow())).returning(*_FACTS)
    ).all()
    new_events += _changed(session, overtaken, at)
    for (status, reason), refs in _grouped(items).items():
        values = _moved(status=status, update_time=max(at[ref] for ref in refs))
        if reason:
            values["failure_reason"] = reason[:255]
        rows = session.execute(
            update(_M).where(_M.c.ref.in_(refs), _M.c.type == "SMS", _M.c.status == "SENT")
            .values(values).returning(*_FACTS)
        ).all()
        new_events += _changed(session, rows, at)
    outbox.append(session, new_events)
    return [None] * len(items)


def _grouped(items: Sequence[tuple[str, str, datetime, str]]) -> dict[tuple[str, str], list[str]]:
    groups: dict[tuple[str, str], list[str]] = {}
    for ref, status, _, reason in items:
        groups.setdefault((status, reason), []).append(ref)
    return groups


def fax_document(session: Session, ref: str) -> bytes | None:
    return session.scalar(select(FaxDocument.data).join(Message, Message.id == FaxDocument.message_id)
                          .where(Message.ref == ref))


def fax_attempted(session: Session, worker: str, ref: str, sent: bool, failure: str, retry_after: timedelta) -> None:
    """A fax attempt's outcome: SENT; else PENDING for the next attempt, or FAILED after the last."""
    message = _still_mine(session, worker, [ref]).get(ref)
    if message is None:
        return
    now = utcnow()
    if sent:
        message.fax_failure = ""
        event = _settle(message, "SENT", now)
    elif message.attempts < MAX_FAX_ATTEMPTS:
        message.claimed_by = None
        message.due_time = now + retry_after
        message.fax_failure = failure
        event = states.record(message, "PENDING", now)
    else:
        message.fax_failure = failure
        event = _settle(message, "FAILED", now, f"The fax could not be sent after {message.attempts} attempts "
                                                f"({failure.replace('_', ' ').lower()}).")
    session.flush()
    outbox.append(session, [event])
