"""The rules of running calls: what CreateCall accepts, how a new call is stored, and every change the
network or a control request makes to a running call.

Status changes go through `states` only. Who shows as caller is `caller_id`'s; which process carries
a call is `heartbeats`'. Every change stores its events (`events`) in the outbox, in its transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import ColumnElement, String, bindparam, func, insert, select, union_all, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from ..core import validation
from ..core.auth import Caller
from ..core.errors import InvalidArgument, Violations
from ..core.resources import by_request_id, get_owned
from ..events import outbox
from ..events.outbox import NewEvent
from ..persistence import keyset
from ..persistence.base import UtcDateTime, new_ref, table_of, utcnow
from . import events, states
from .events import Happened
from .models import Call, CallParticipant
from .states import NetworkEvent

DEFAULT_TIMEOUT, MAX_TIMEOUT = 30, 120
MAX_METADATA, MAX_METADATA_KEY, MAX_METADATA_VALUE = 20, 64, 512
MAX_REF, MAX_PARTY = 32, 512
DTMF = re.compile(r"[0-9*#A-D]{1,64}")


@dataclass(frozen=True)
class NewCall:
    """A CreateCall request whose fields are each well-formed (not yet checked against the workspace)."""

    source: str  # E.164 when `source_is_number`, else an agent ref
    source_is_number: bool
    destination: str  # E.164 or SIP URI
    caller_id: str  # E.164 or ""
    device_id: str  # agent ref or ""
    webhook: str | None
    timeout: int  # seconds
    metadata: dict[str, str]
    request_id: str | None


def checked_party(v: Violations, field: str, value: str) -> str | None:
    """A callee: E.164 (any form with a country code) or a `sip:`/`sips:` URI."""
    value = value.strip()
    if value.lower().startswith(("sip:", "sips:")):
        return validation.sip_uri(v, field, value)
    return validation.e164(v, field, value)


def checked_new_call(
    *, source: str, destination: str, caller_id: str, device_id: str, webhook: str, timeout: float | None,
    metadata: Mapping[str, str], request_id: str,
) -> NewCall:
    """The form of every field, all problems at once. A `source` starting with '+' is a number, else an
    agent ref. `timeout` is in seconds; None: the default."""
    v = Violations()
    source = source.strip()
    source_is_number = source.startswith("+")
    if source_is_number:
        checked_source = validation.e164(v, "source", source) or ""
    else:
        checked_source = validation.text(v, "source", source, max_len=MAX_REF, required=True)
    checked_destination = checked_party(v, "destination", destination) or ""
    checked_caller_id = validation.e164(v, "caller_id", caller_id) or "" if caller_id.strip() else ""
    device_id = validation.text(v, "device_id", device_id, max_len=MAX_REF)
    if source_is_number and not device_id:
        v.add("device_id", "is required when `source` is a number (the agent whose device places the call)")
    checked_webhook = validation.http_url(v, "webhook", webhook) if webhook else None
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    elif not (1 <= timeout <= MAX_TIMEOUT and float(timeout).is_integer()):
        v.add("timeout", f"must be 1 to {MAX_TIMEOUT} whole seconds (unset means {DEFAULT_TIMEOUT}), got {timeout:g}s")
    if len(metadata) > MAX_METADATA:
        v.add("metadata", f"must have at most {MAX_METADATA} pairs, got {len(metadata)}")
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY:
            v.add("metadata", f"key {key[:80]!r} must be 1 to {MAX_METADATA_KEY} characters")
        if len(value) > MAX_METADATA_VALUE:
            v.add(f"metadata[{key[:80]}]", f"must be at most {MAX_METADATA_VALUE} characters, got {len(value)}")
    checked_request_id = validation.request_id(v, request_id)
    v.raise_if_any()
    return NewCall(
        checked_source, source_is_number, checked_destination, checked_caller_id, device_id, checked_webhook,
        int(timeout), dict(metadata), checked_request_id,
    )


# Asked before every CreateCall with a request_id (the SDK sends one), so a raw lookup keeps it cheap.
CALL_BY_REQUEST_ID = select(Call.id).where(
    Call.workspace_id == bindparam("workspace_id"), Call.request_id == bindparam("request_id")
)


def earlier_call(session: Session, caller: Caller, request_id: str | None) -> Call | None:
    return by_request_id(session, Call, caller, request_id)


# (attribute, column) of every column a new call's INSERT sets: the attribute `call_metadata` is the
# column `metadata`.
_CALLS = table_of(Call)
_CALL_COLUMNS = [(a.key, a.columns[0].name) for a in sa_inspect(Call).column_attrs if a.key != "id"]


def insert_call(
    session: Session, caller: Caller, new: NewCall, caller_id: str, runner_id: str, *, ref: str | None = None,
    direction: str = "OUTBOUND",
) -> Call:
    """Stores the QUEUED call, carried by `runner_id`, its two parties and its NEW_CALL event, with Core
    statements: the ORM's unit of work cost several times as much, on every call. A request_id an
    earlier create used raises IntegrityError. An inbound call keeps the `ref` the network reported it under.

    Returns the Call as a transient object, every column set, for the response.
    """
    now = utcnow()
    call = Call(
        ref=ref or new_ref(), workspace_id=caller.workspace_id, request_id=new.request_id, create_time=now,
        update_time=now, version=1, from_party=new.source, to_party=new.destination, caller_id=caller_id,
        device_id=new.device_id, direction=direction, status=states.QUEUED, hangup_cause=None, muted=False,
        on_hold=False, recording=False, webhook=new.webhook, timeout_seconds=new.timeout,
        call_metadata=new.metadata, answer_time=None, end_time=None, starred=False, archived=False, read=False,
        note="", runner_id=runner_id, labels=[], event_sequence=1,
        participants=[
            CallParticipant(number=new.source, owner=True, muted=False, on_hold=False),
            CallParticipant(number=new.destination, owner=False, muted=False, on_hold=False),
        ],
    )
    calls = _CALLS
    call.id = session.execute(
        insert(calls).returning(calls.c.id), {column: getattr(call, key) for key, column in _CALL_COLUMNS}
    ).scalar_one()
    session.execute(
        insert(table_of(CallParticipant)),
        [{"call_id": call.id, "number": p.number, "owner": p.owner, "muted": False, "on_hold": False}
         for p in call.participants],
    )
    outbox.append(session, [events.event(call, Happened(events.NEW_CALL), 1, now)])
    return call


def list_active(session: Session, caller: Caller, after_id: int | None, size: int
                ) -> tuple[Sequence[Call], int | None]:
    """One page of the calls that have not ended, oldest first, and the last id if more follow.

    Each active status is a walk of its (workspace, status, id) index, the walks merged: with a plain
    `status IN (...)`, SQLite walked the workspace's whole history in id order instead (0.5 s at
    300,000 ended calls), to save sorting a page."""
    walks = [
        keyset.window(select(Call.id).where(Call.workspace_id == caller.workspace_id, Call.status == status),
                      Call.id, after_id, size)
        for status in sorted(states.ACTIVE)
    ]
    merged = union_all(*(select(walk.subquery().c.id) for walk in walks)).subquery()
    return keyset.page(session, select(Call).where(Call.id.in_(select(merged.c.id))), Call.id, after_id, size)


_LIVE_STATUSES = sorted(states.ACTIVE)
# One indexed count per status (ix_calls_status), in one statement.
_COUNT_LIVE = select(*(select(func.count()).where(Call.status == status).scalar_subquery() for status in _LIVE_STATUSES))


def live_by_status(session: Session) -> list[Metric]:
    """For /metrics: the calls of every workspace that have not ended, by status."""
    counts = session.execute(_COUNT_LIVE).one()
    gauge = GaugeMetricFamily("voxplane_calls_live", "Calls not yet ended (every workspace's), by status.",
                              labels=["status"])
    for status, count in zip(_LIVE_STATUSES, counts, strict=True):
        gauge.add_metric([status], count)
    return [gauge]


def _locked(session: Session, query_filter: ColumnElement[bool]) -> Call | None:
    return session.scalar(select(Call).where(query_filter).with_for_update())


def _apply(call: Call, step: states.Transition) -> None:
    now = utcnow()
    call.status = step.status
    if step.hangup_cause:
        call.hangup_cause = step.hangup_cause
    if step.answered:
        call.answer_time = now
    if step.ended:
        call.end_time = now


_calls = _CALLS.c
_EVENT_UPDATE = (
    update(_CALLS)
    .where(_calls.id == bindparam("call_id"))
    .values(
        status=bindparam("new_status"),
        hangup_cause=func.coalesce(bindparam("new_cause", type_=String), _calls.hangup_cause),
        answer_time=func.coalesce(bindparam("answered", type_=UtcDateTime), _calls.answer_time),
        end_time=func.coalesce(bindparam("ended", type_=UtcDateTime), _calls.end_time),
        update_time=bindparam("now", type_=UtcDateTime),
        version=_calls.version + 1,
        event_sequence=bindparam("sequence"),
    )
)


@dataclass
class _Running:
    """A call as apply_events reads it, and as each event of the batch leaves it (events.CallFacts)."""

    id: int
    ref: str
    workspace_id: int
    direction: str
    webhook: str | None
    from_party: str
    to_party: str
    caller_id: str
    status: str
    hangup_cause: str | None
    muted: bool
    on_hold: bool
    recording: bool
    event_sequence: int


_RUNNING = select(*(_calls[name] for name in _Running.__dataclass_fields__))
_NETWORK_EVENT_TYPES = {states.Event.RING: events.RINGING, states.Event.ANSWER: events.ANSWER,
                        states.Event.END: events.HANGUP}


def apply_events(session: Session, reported: Sequence[NetworkEvent]) -> list[states.TransitionRefused | None]:
    """Applies what the network reported, in order, in the caller's transaction: one SELECT of the calls
    (locked), one executemany UPDATE and one executemany INSERT of their events, however many. Returns,
    for each, None when it was applied (or its call is gone) or the TransitionRefused that says why its
    call's status refused it. Ring, answer and end change the status; DTMF only makes a DATA event."""
    found = session.execute(_RUNNING.where(_calls.ref.in_({e.ref for e in reported})).with_for_update())
    calls = {row.ref: _Running(**row._mapping) for row in found}
    now = utcnow()
    changes: list[dict[str, object]] = []
    made: list[NewEvent] = []
    outcomes: list[states.TransitionRefused | None] = []
    for network in reported:
        call = calls.get(network.ref)
        if call is None:
            outcomes.append(None)
            continue
        try:
            if network.event is None:
                states.check_pressed(call.status)
                step = states.Transition(call.status)
            else:
                step = states.transition(call.status, network.event, network.cause)
        except states.TransitionRefused as refused:
            outcomes.append(refused)
            continue
        # A later event of the same call follows this one.
        call.status, call.hangup_cause = step.status, step.hangup_cause or call.hangup_cause
        call.event_sequence += 1
        changes.append({
            "call_id": call.id, "new_status": step.status, "new_cause": step.hangup_cause,
            "answered": network.time if step.answered else None, "ended": network.time if step.ended else None,
            "now": now, "sequence": call.event_sequence,
        })
        happened = Happened(events.DATA, digits=network.dtmf) if network.event is None else Happened(
            _NETWORK_EVENT_TYPES[network.event])
        made.append(events.event(call, happened, call.event_sequence, network.time))
        outcomes.append(None)
    if changes:
        session.execute(_EVENT_UPDATE, changes)
        outbox.append(session, made)
    return outcomes


def controllable(session: Session, caller: Caller, ref: str, control: states.Control) -> Call:
    """The caller's call `ref`, if its status allows `control` (else FAILED_PRECONDITION naming it)."""
    call = get_owned(session, Call, caller, ref)
    states.check_control(call.status, control, call.ref)
    return call


# Tells what happened, right after it did, so that its event shows the call as that step left it.
Emit = Callable[[Happened], None]
Change = Callable[[Call, Emit], None]


def change_call(session: Session, call: Call, change: Change, at: datetime) -> None:
    """Applies `change` to `call` (locked) and stores the events it emits, made at `at`."""
    made: list[NewEvent] = []

    def emit(happened: Happened) -> None:
        call.event_sequence += 1
        made.append(events.event(call, happened, call.event_sequence, at))

    change(call, emit)
    outbox.append(session, made)


def controlled(
    session: Session, caller: Caller, ref: str, control: states.Control, change: Change, at: datetime
) -> Call:
    """Applies `change` to the caller's call `ref`, re-checking under a row lock that `control` is still
    allowed; its events are made at `at`, the request's time."""
    get_owned(session, Call, caller, ref)  # NOT_FOUND first, for another workspace's ref
    call = _locked(session, (Call.ref == ref) & (Call.workspace_id == caller.workspace_id))
    assert call is not None
    states.check_control(call.status, control, call.ref)
    change_call(session, call, change, at)
    return call


def ending(cause: str) -> Change:
    """Ends the call with `cause`, through the state machine."""

    def change(call: Call, emit: Emit) -> None:
        _apply(call, states.transition(call.status, states.Event.END, cause))
        emit(Happened(events.HANGUP))

    return change


def muting(mute: bool) -> Change:
    def change(call: Call, emit: Emit) -> None:
        if call.muted == mute:
            return
        call.muted = mute
        for party in call.participants:
            if party.owner:
                party.muted = mute
        emit(Happened(events.MUTED if mute else events.UNMUTED))

    return change


def holding(hold: bool) -> Change:
    """Hold is the owner's: the other parties are put on hold."""

    def change(call: Call, emit: Emit) -> None:
        if call.on_hold == hold:
            return
        call.on_hold = hold
        for party in call.participants:
            if not party.owner:
                party.on_hold = hold
        emit(Happened(events.HELD if hold else events.RESUMED))

    return change


def recording(start: bool) -> Change:
    def change(call: Call, emit: Emit) -> None:
        if call.recording == start:
            return
        call.recording = start
        emit(Happened(events.RECORDING_STARTED if start else events.RECORDING_STOPPED))

    return change


def playing(url: str) -> Change:
    """Changes nothing stored, but watchers hear of the announcement."""
    return lambda call, emit: emit(Happened(events.PLAYING, audio_url=url))


def transferring(to: str, attended: bool) -> Change:
    """Adds the transfer target as a party; a blind transfer ends this call (FORWARDED)."""

    def change(call: Call, emit: Emit) -> None:
        call.participants.append(CallParticipant(number=to))
        emit(Happened(events.TRANSFERRED, transfer_destination=to))
        if not attended:
            ending(states.FORWARDED)(call, emit)

    return change


def redirecting(webhook: str) -> Change:
    def change(call: Call, emit: Emit) -> None:
        call.webhook = webhook
        emit(Happened(events.REDIRECTED))

    return change


def unchanged(call: Call, emit: Emit) -> None:
    """For orders that change nothing stored and tell nothing (DTMF sent into the call)."""


def checked_transfer_target(destination: str) -> str:
    v = Violations()
    target = checked_party(v, "destination", destination)
    v.raise_if_any()
    return target or ""


def checked_url(url: str) -> str:
    v = Violations()
    checked = validation.http_url(v, "url", url)
    v.raise_if_any()
    return checked or ""


def checked_digits(digits: str) -> str:
    if not DTMF.fullmatch(digits):
        raise InvalidArgument.of("digits", f"must be 1 to 64 of 0-9 * # A-D, got {digits[:80]!r}")
    return digits


def checked_redirect(webhook: str) -> str:
    v = Violations()
    checked = validation.http_url(v, "webhook", webhook)
    v.raise_if_any()
    return checked or ""
