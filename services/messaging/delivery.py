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
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..events import outbox
from ..events.outbox import NewEvent
from ..persistence.base import utcnow
from ..persistence.tenancy import Workspace
from . import sending, states
from .models import WAITING_STATUSES, FaxDocument, Message

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


def claim(session: Session, worker: str, lease: timedelta, limit: int) -> list[Claimed]:
    now = utcnow()
    due = select(Message.id).where(Message.due_time <= now).order_by(Message.due_time).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    ids = list(session.scalars(due))
    if not ids:
        return []
    new_events: list[NewEvent] = []
    claimed: list[Claimed] = []
    for message in session.scalars(select(Message).where(Message.id.in_(ids)).order_by(Message.due_time)):
        if message.status in WAITING_STATUSES:
            message.attempts += 1
            new_events.append(states.record(message, "SENDING", now))
        message.claimed_by = worker
        message.due_time = now + lease
        claimed.append(Claimed(message.ref, message.type, message.workspace_id, message.source, message.destination,
                               message.body, message.page_count, message.attempts))
    session.flush()
    outbox.append(session, new_events)
    return claimed


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


def handed_off(session: Session, items: Sequence[tuple[str, HandedOff]]) -> list[None]:
    """Stores the carrier's answers, each (worker, answer), for the claims still the workers'."""
    now = utcnow()
    new_events: list[NewEvent] = []
    for worker in {w for w, _ in items}:
        mine = _still_mine(session, worker, [a.ref for w, a in items if w == worker])
        for w, answer in items:
            message = mine.get(answer.ref) if w == worker else None
            if message is not None:
                new_events.append(_settle(message, "SENT" if answer.accepted else "FAILED", now, answer.reason))
    session.flush()
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
    """Stores delivery receipts, each (ref, status, time, reason); one that would move a message back is
    dropped."""
    query = select(Message).where(Message.ref.in_([i[0] for i in items])).order_by(Message.id)
    by_ref = {m.ref: m for m in session.scalars(_locked(session, query))}
    new_events: list[NewEvent] = []
    for ref, status, at, reason in items:
        message = by_ref.get(ref)
        if message is not None and states.advances(message, status):
            if message.status == "SENDING":  # the receipt overtook the hand-off's answer
                new_events.append(_settle(message, "SENT", at))
            new_events.append(states.record(message, status, at, reason))
    session.flush()
    outbox.append(session, new_events)
    return [None] * len(items)


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
