"""The one state machine of a call: which event moves a call from which status to which.

Every status change of a call goes through `transition`; an event that does
not fit the call's status raises `TransitionRefused` and changes nothing.
Which control requests a status allows is decided here too (`check_control`).
Plain Python: statuses and causes are the proto enum names without prefix.

    QUEUED ──ring──> RINGING ──answer──> IN_PROGRESS ──end(NORMAL_CLEARING|FORWARDED)──> COMPLETED
      │                 │                     └──end(SERVICE_RESTART)──> FAILED
      └─────────────────┴──end(cause)──> BUSY | NO_ANSWER | CANCELED | FAILED  (by the cause, below)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..core.errors import FailedPrecondition

QUEUED, RINGING, IN_PROGRESS = "QUEUED", "RINGING", "IN_PROGRESS"
COMPLETED, BUSY, FAILED, NO_ANSWER, CANCELED = "COMPLETED", "BUSY", "FAILED", "NO_ANSWER", "CANCELED"
ACTIVE = frozenset({QUEUED, RINGING, IN_PROGRESS})
FINAL = frozenset({COMPLETED, BUSY, FAILED, NO_ANSWER, CANCELED})

# Hangup causes (sipgate's, plus SERVICE_RESTART).
NORMAL_CLEARING, CANCEL, CONGESTION, NOT_FOUND = "NORMAL_CLEARING", "CANCEL", "CONGESTION", "NOT_FOUND"
FORWARDED, SERVICE_RESTART = "FORWARDED", "SERVICE_RESTART"
CAUSES = frozenset({NORMAL_CLEARING, "BUSY", CANCEL, "NO_ANSWER", CONGESTION, NOT_FOUND, FORWARDED, SERVICE_RESTART})

# How a call that was never answered ends, by cause. NORMAL_CLEARING and FORWARDED need an answered call.
_UNANSWERED_END = {
    "BUSY": BUSY,
    "NO_ANSWER": NO_ANSWER,
    CANCEL: CANCELED,
    CONGESTION: FAILED,
    NOT_FOUND: FAILED,
    SERVICE_RESTART: FAILED,
}
# How an answered call ends, by cause.
_ANSWERED_END = {NORMAL_CLEARING: COMPLETED, FORWARDED: COMPLETED, SERVICE_RESTART: FAILED}


class Event(enum.Enum):
    RING = "ring"  # the callee's phone rings
    ANSWER = "answer"  # the callee answered
    END = "end"  # the call ended, with a cause


@dataclass(frozen=True)
class Transition:
    status: str
    hangup_cause: str | None = None
    answered: bool = False  # stamp answer_time
    ended: bool = False  # stamp end_time


@dataclass(frozen=True)
class NetworkEvent:
    """What the network did to call `ref`: `event` RING / ANSWER / END (with `cause`), or None with `dtmf`
    digits the far end pressed. Reported by a CallGateway, applied through `transition`. `time` is when
    the network saw it: the gateway stamps it as it reports, however long the event then waits to be stored."""

    ref: str
    event: Event | None
    cause: str | None = None
    dtmf: str = ""
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


class TransitionRefused(FailedPrecondition):
    """An event or request that the call's status does not allow; nothing was changed."""


def transition(status: str, event: Event, cause: str | None = None) -> Transition:
    """Where `event` (with `cause`, for END) takes a call in `status`; refused if it does not fit."""
    if status in FINAL:
        raise TransitionRefused(f"The call has ended ({status}); it cannot {event.value}.")
    if event is Event.RING and status == QUEUED:
        return Transition(RINGING)
    if event is Event.ANSWER and status in (QUEUED, RINGING):
        return Transition(IN_PROGRESS, answered=True)
    if event is Event.END:
        if cause not in CAUSES:
            raise TransitionRefused(f"{cause!r} is not a hangup cause.")
        table = _ANSWERED_END if status == IN_PROGRESS else _UNANSWERED_END
        if cause in table:
            return Transition(table[cause], hangup_cause=cause, ended=True)
        raise TransitionRefused(f"A call that is {status} cannot end with cause {cause}.")
    raise TransitionRefused(f"A call that is {status} cannot {event.value}.")


def check_pressed(status: str) -> None:
    """Refuses DTMF the network reports on a call that has ended."""
    if status in FINAL:
        raise TransitionRefused(f"The call has ended ({status}); it cannot take DTMF.")


class Control(enum.Enum):
    """What a caller may ask of a running call, and in which statuses."""

    HANGUP = ("hang up", frozenset({IN_PROGRESS}))
    CANCEL = ("cancel", frozenset({QUEUED, RINGING}))
    MUTE = ("mute or unmute", frozenset({IN_PROGRESS}))
    HOLD = ("hold or resume", frozenset({IN_PROGRESS}))
    RECORD = ("record", frozenset({IN_PROGRESS}))
    PLAY = ("play audio into", frozenset({IN_PROGRESS}))
    TRANSFER = ("transfer", frozenset({IN_PROGRESS}))
    DTMF = ("send DTMF into", frozenset({IN_PROGRESS}))
    REDIRECT = ("redirect", ACTIVE)

    def __init__(self, verb: str, allowed: frozenset[str]):
        self.verb = verb
        self.allowed = allowed


_HINTS = {
    (Control.HANGUP, QUEUED): "; it has not been answered: use CancelCall",
    (Control.HANGUP, RINGING): "; it has not been answered: use CancelCall",
    (Control.CANCEL, IN_PROGRESS): "; it was answered: use HangupCall",
}


def check_control(status: str, control: Control, ref: str) -> None:
    """Refuses (FAILED_PRECONDITION naming the status) a control request the call's status does not allow."""
    if status not in control.allowed:
        state = f"has ended ({status})" if status in FINAL else f"is {status}"
        raise TransitionRefused(
            f"Cannot {control.verb} call {ref}: it {state}{_HINTS.get((control, status), '')}."
        )
