"""How a status change of a message loaded as a row object is recorded: its time kept (a StatusChange)
and its event made, in the transaction that makes it. (The worker's hot path, delivery.py, moves many
messages with single UPDATE statements instead, whose WHERE clauses say which statuses may move: a
receipt that arrives late never moves a message back, and a final status never changes again.)
"""

from __future__ import annotations

from datetime import datetime

from ..events.outbox import NewEvent
from . import events
from .models import Message, StatusChange


def record(message: Message, status: str, at: datetime, reason: str = "") -> NewEvent:
    """`message` takes `status` at `at`, with its time kept; returns its event, for the caller to append
    with the others of its transaction (one INSERT for them all)."""
    message.status = status
    if reason:
        message.failure_reason = reason[:255]
    message.update_time = at
    message.event_sequence = (message.event_sequence or 0) + 1
    message.changes.append(StatusChange(status=status, time=at))
    return events.event(message, at)
