"""The events of calls: what each change of a call tells its watchers and webhooks, as outbox rows.

An event row keeps as columns what readers filter and order on (event id, call, sequence, type,
network time) and the rest of the CallEvent in `payload`, in the proto's JSON form as
json_format.MessageToDict writes it (camelCase names, enum value names, fields at their default left
out): the webhooks worker posts it as it is, and streams parse it back. Plain Python, as the rules are.
Each event's sequence is the call's `event_sequence` plus one; whoever appends one stores the new
count on the call in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from ..core.auth import Caller
from ..core.resources import get_owned
from ..events import watching
from ..events.outbox import NewEvent
from ..events.watching import Cursor
from .models import Call

TOPIC = "call"

NEW_CALL, RINGING, ANSWER, HANGUP, DATA = "NEW_CALL", "RINGING", "ANSWER", "HANGUP", "DATA"
MUTED, UNMUTED, HELD, RESUMED = "MUTED", "UNMUTED", "HELD", "RESUMED"
RECORDING_STARTED, RECORDING_STOPPED = "RECORDING_STARTED", "RECORDING_STOPPED"
PLAYING, TRANSFERRED, REDIRECTED = "PLAYING", "TRANSFERRED", "REDIRECTED"


class CallFacts(Protocol):
    """What an event tells of its call, after the change: a Call, or a row of the same names."""

    @property
    def ref(self) -> str: ...
    @property
    def workspace_id(self) -> int: ...
    @property
    def direction(self) -> str: ...
    @property
    def webhook(self) -> str | None: ...
    @property
    def from_party(self) -> str: ...
    @property
    def to_party(self) -> str: ...
    @property
    def caller_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def hangup_cause(self) -> str | None: ...
    @property
    def muted(self) -> bool: ...
    @property
    def on_hold(self) -> bool: ...
    @property
    def recording(self) -> bool: ...


@dataclass(frozen=True)
class Happened:
    """One event a change makes, before it is numbered: its type and its own fields (digits, audio URL,
    transfer destination; a HANGUP's cause is the call's)."""

    type: str
    digits: str = ""
    audio_url: str = ""
    transfer_destination: str = ""


def payload(call: CallFacts, happened: Happened) -> dict[str, Any]:
    """The CallEvent's fields but the columns, as MessageToDict writes them."""
    fields: dict[str, Any] = {
        "status": f"CALL_STATUS_{call.status}",
        "hangupCause": f"HANGUP_CAUSE_{call.hangup_cause}" if happened.type == HANGUP and call.hangup_cause else "",
        "digits": happened.digits,
        "direction": f"DIRECTION_{call.direction}",
        "source": call.from_party,
        "destination": call.to_party,
        "callerId": call.caller_id,
        "muted": call.muted,
        "onHold": call.on_hold,
        "recording": call.recording,
        "audioUrl": happened.audio_url,
        "transferDestination": happened.transfer_destination,
        "webhook": call.webhook or "" if happened.type == REDIRECTED else "",
    }
    return {name: value for name, value in fields.items() if value}


def event(call: CallFacts, happened: Happened, sequence: int, at: datetime) -> NewEvent:
    """The outbox row of `happened` to `call` (as it is after it), numbered `sequence`, made at `at`."""
    return NewEvent(
        workspace_id=call.workspace_id, topic=TOPIC, resource_ref=call.ref, sequence=sequence, type=happened.type,
        network_time=at, direction=call.direction, webhook=call.webhook, payload=payload(call, happened),
    )


START_OVER = "watch again without a cursor (and find what was missed with ListCalls)"


def watch_start(session: Session, cursor: Cursor | None, kept: timedelta, *, caller: Caller, call_ref: str
                ) -> Cursor:
    """Where a WatchCallEvents of the caller starts (watching.start); NOT_FOUND for a call_ref of no call
    of the caller's."""
    if call_ref:
        get_owned(session, Call, caller, call_ref)
    return watching.start(session, TOPIC, bool(call_ref), cursor, kept, START_OVER)
