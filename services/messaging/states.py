"""Where a message may go from where it stands, and how every change is recorded.

A receipt that arrives late (SENT after DELIVERED, say) never moves a message back: a status only
advances, and a terminal one never changes again. Every change stores its time (a StatusChange) and
its event, in the transaction that makes it.
"""

from __future__ import annotations

from datetime import datetime

from ..events.outbox import NewEvent
from . import events
from .models import Message, StatusChange

TERMINAL = frozenset({"DELIVERED", "UNDELIVERED", "FAILED", "CANCELED", "RECEIVED"})
# How far along each status is; a change only ever goes further. A fax's SENT is terminal.
_RANK = {"QUEUED": 0, "SCHEDULED": 0, "PENDING": 0, "SENDING": 1, "SENT": 2}


def is_final(message: Message) -> bool:
    return message.status in TERMINAL or (message.type == "FAX" and message.status == "SENT")


def advances(message: Message, status: str) -> bool:
    """Whether taking `status` moves `message` forward (a fax retry's PENDING after SENDING does)."""
    if is_final(message) or status == message.status:
        return False
    if status in TERMINAL:
        return True
    if message.type == "FAX" and message.status == "SENDING" and status == "PENDING":
        return True  # an attempt failed; another follows
    return _RANK[status] > _RANK[message.status]


def record(message: Message, status: str, at: datetime, reason: str = "") -> NewEvent:
    """`message` takes `status` at `at` (the caller checked it advances), with its time kept; returns its
    event, for the caller to append with the others of its transaction (one INSERT for them all)."""
    message.status = status
    if reason:
        message.failure_reason = reason[:255]
    message.update_time = at
    message.event_sequence = (message.event_sequence or 0) + 1
    message.changes.append(StatusChange(status=status, time=at))
    return events.event(message, at)
