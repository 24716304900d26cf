"""The events of messages: each status change of a message as an outbox row (topic "message").

Like calls' events, a row keeps as columns what readers filter and order on, and the rest of the
MessageEvent in `payload` in the proto's JSON form (camelCase names, enum value names, fields at their
default left out), which the webhooks worker posts as it is and streams parse back. The event's type is
the status the message took. Each event's sequence is the message's `event_sequence` after the change.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from ..core.auth import Caller
from ..core.resources import get_owned
from ..events import watching
from ..events.outbox import NewEvent
from ..events.watching import Cursor
from .models import Message

TOPIC = "message"
START_OVER = "watch again without a cursor (and find what was missed with ListMessages)"


class MessageFacts(Protocol):
    """What an event tells of its message, after the change: a Message, or one just stored (sending.Stored)."""

    @property
    def ref(self) -> str: ...
    @property
    def workspace_id(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def direction(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def destination(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def failure_reason(self) -> str: ...
    @property
    def webhook(self) -> str | None: ...
    @property
    def event_sequence(self) -> int: ...


def payload(message: MessageFacts) -> dict[str, Any]:
    """The MessageEvent's fields but the columns, as MessageToDict writes them."""
    fields: dict[str, Any] = {
        "status": f"MESSAGE_STATUS_{message.status}",
        "messageType": f"MESSAGE_TYPE_{message.type}",
        "direction": f"DIRECTION_{message.direction}",
        "source": message.source,
        "destination": message.destination,
        "body": message.body if message.status == "RECEIVED" else "",
        "failureReason": message.failure_reason,
    }
    return {name: value for name, value in fields.items() if value}


def event(message: MessageFacts, at: datetime) -> NewEvent:
    """The outbox row of `message` having just taken its status, at `at`."""
    return NewEvent(
        workspace_id=message.workspace_id, topic=TOPIC, resource_ref=message.ref, sequence=message.event_sequence,
        type=message.status, network_time=at, direction=message.direction, webhook=message.webhook,
        payload=payload(message),
    )


def watch_start(session: Session, cursor: Cursor | None, kept: timedelta, *, caller: Caller, message_ref: str
                ) -> Cursor:
    """Where a WatchMessageEvents of the caller starts (watching.start); NOT_FOUND for a message_ref of no
    message of the caller's."""
    if message_ref:
        get_owned(session, Message, caller, message_ref)
    return watching.start(session, TOPIC, bool(message_ref), cursor, kept, START_OVER)
