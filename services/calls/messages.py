"""Calls' conversions between proto messages and the rules' objects, for every servicer module."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration

from voxplane.calls.v1 import calls_pb2 as pb

from ..core.convert import ProtoEnum, changed_fields, duration, optional, time_of, timedelta_of, timestamp
from ..core.errors import Violations
from ..core.paging import PageTokens
from ..events.watching import StreamReplies
from ..persistence.base import etag_of
from . import events, guards, history, inbound, live
from .models import Call, CallRecording, CallSettings

DIRECTION = ProtoEnum(pb.Direction)
STATUS = ProtoEnum(pb.CallStatus)
HANGUP_CAUSE = ProtoEnum(pb.HangupCause)
EVENT_TYPE = ProtoEnum(pb.CallEventType)
COSTLY_TYPE = ProtoEnum(pb.CostlyNumberType)
SETTINGS_FIELDS = ("allowed_countries", "allowed_costly_types", "max_concurrent_calls")


def event_replies(tokens: PageTokens) -> StreamReplies:
    """What WatchCallEvents answers (services/events/watching.py, shared with WatchMessageEvents)."""
    return StreamReplies(tokens, events.TOPIC, pb.WatchCallEventsResponse, pb.CallEvent, pb.StreamHeartbeat,
                         "call_ref", EVENT_TYPE)


def call_proto(call: Call | Any, participants: Iterable[Any] | None = None, labels: Iterable[str] | None = None
               ) -> pb.Call:
    """`call` (an ORM Call, or a row of a history page) as the contract has it; `participants` and
    `labels`, when given, instead of its relationships (a history page reads them for the whole page)."""
    message = pb.Call(
        ref=call.ref,
        source=call.from_party,
        destination=call.to_party,
        caller_id=call.caller_id,
        device_id=call.device_id,
        direction=DIRECTION.number(call.direction),
        status=STATUS.number(call.status),
        hangup_cause=HANGUP_CAUSE.number(call.hangup_cause),
        participants=[
            pb.Participant(number=p.number, muted=p.muted, on_hold=p.on_hold, owner=p.owner)
            for p in (call.participants if participants is None else participants)
        ],
        muted=call.muted,
        on_hold=call.on_hold,
        recording=call.recording,
        create_time=timestamp(call.create_time),
        update_time=timestamp(call.update_time),
        metadata=call.call_metadata or {},
        webhook=call.webhook or "",
        timeout=Duration(seconds=call.timeout_seconds),
        starred=call.starred,
        archived=call.archived,
        read=call.read,
        note=call.note,
        labels=[label.label for label in call.labels] if labels is None else list(labels),
        etag=etag_of(call.ref, call.version),
    )
    if call.answer_time is not None:
        message.answer_time.CopyFrom(timestamp(call.answer_time))
    if call.end_time is not None:
        message.end_time.CopyFrom(timestamp(call.end_time))
        if call.answer_time is not None:
            message.duration.CopyFrom(duration(max(call.end_time - call.answer_time, timedelta(0))))
    return message


MARK_FIELDS = ("starred", "archived", "read", "note", "labels")


def new_call_from(request: pb.CreateCallRequest) -> live.NewCall:
    v = Violations()
    timeout_delta = timedelta_of(request, "timeout", v)
    v.raise_if_any()
    timeout = timeout_delta.total_seconds() if timeout_delta is not None else None
    return live.checked_new_call(
        source=request.source, destination=request.destination, caller_id=request.caller_id,
        device_id=request.device_id, webhook=request.webhook, timeout=timeout,
        metadata=request.metadata, request_id=request.request_id,
    )


def filter_from(message: pb.CallFilter) -> history.CallFilter:
    """The request's CallFilter, checked and normalised; every bad field is named `filter.<field>`."""
    v = Violations()
    raw = history.CallFilter(
        direction=DIRECTION.name(message.direction, "filter.direction", v) if message.direction else None,
        status=STATUS.name(message.status, "filter.status", v) if message.status else None,
        party=message.party or None,
        created_after=time_of(message, "created_after", v, "filter.created_after"),
        created_before=time_of(message, "created_before", v, "filter.created_before"),
        starred=optional(message, "starred"),
        archived=optional(message, "archived"),
        read=optional(message, "read"),
        label=message.label or None,
    )
    call_filter = history.checked_filter(v, raw)
    v.raise_if_any()
    return call_filter


def marks_from(request: pb.UpdateCallRecordRequest, prefix: str = "") -> history.Marks:
    """The marks an UpdateCallRecord changes; None for those it leaves alone. `prefix` names the request
    in errors (`requests[3].`, in a batch)."""
    changes = changed_fields(request, MARK_FIELDS, f"{prefix}update_mask")
    return history.Marks(
        starred=request.starred if "starred" in changes else None,
        archived=request.archived if "archived" in changes else None,
        read=request.read if "read" in changes else None,
        note=request.note if "note" in changes else None,
        labels=list(request.labels) if "labels" in changes else None,
    )


def simulated_call_from(request: pb.SimulateInboundCallRequest) -> inbound.SimulatedCall:
    return inbound.checked_simulated_call(request.source, request.destination, request.digits)


def routed_proto(routed: inbound.Routed) -> pb.SimulateInboundCallResponse:
    if routed.call is None:
        return pb.SimulateInboundCallResponse(hangup_cause=HANGUP_CAUSE.number(routed.rejected_cause))
    return pb.SimulateInboundCallResponse(call=call_proto(routed.call))


def call_settings_proto(settings: CallSettings) -> pb.CallSettings:
    proto = pb.CallSettings(
        allowed_countries=settings.allowed_countries,
        allowed_costly_types=[COSTLY_TYPE.number(name) for name in settings.allowed_costly_types],
        max_concurrent_calls=settings.max_concurrent_calls,
        effective_max_concurrent_calls=guards.effective_cap(settings.max_concurrent_calls),
    )
    if settings.update_time is not None:
        proto.update_time.CopyFrom(timestamp(settings.update_time))
    return proto


def recording_proto(recording: CallRecording) -> tuple[pb.CallRecording, bytes]:
    """A recording's description, and its file."""
    described = pb.CallRecording(
        content_type=recording.content_type, duration=duration(timedelta(milliseconds=recording.duration_ms)),
        size_bytes=len(recording.data), channels=recording.channels, sample_rate=recording.sample_rate,
        update_time=timestamp(recording.update_time),
    )
    return described, bytes(recording.data)


def _costly_name(number: int) -> str | int:
    """The rules' name of a CostlyNumberType value; a number the contract does not define stays a number."""
    value = pb.CostlyNumberType.DESCRIPTOR.values_by_number.get(number)
    return value.name.removeprefix("COSTLY_NUMBER_TYPE_") if value else number


def call_settings_update(request: pb.UpdateCallSettingsRequest) -> guards.SettingsUpdate:
    changes = changed_fields(request, SETTINGS_FIELDS)
    return guards.SettingsUpdate(
        list(request.allowed_countries) if "allowed_countries" in changes else None,
        [_costly_name(n) for n in request.allowed_costly_types] if "allowed_costly_types" in changes else None,
        request.max_concurrent_calls if "max_concurrent_calls" in changes else None,
    )
