"""Calls' conversions between proto messages and the rules' objects, for every servicer module."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

from voxplane.calls.v1 import calls_pb2 as pb

from ..core.convert import ProtoEnum, duration, optional, timestamp
from ..core.errors import Violations
from . import history, live
from .models import Call

DIRECTION = ProtoEnum(pb.Direction)
STATUS = ProtoEnum(pb.CallStatus)
HANGUP_CAUSE = ProtoEnum(pb.HangupCause)


def call_proto(call: Call) -> pb.Call:
    message = pb.Call(
        ref=call.ref,
        to=call.to_party,
        caller_id=call.caller_id,
        device_id=call.device_id,
        direction=DIRECTION.number(call.direction),
        status=STATUS.number(call.status),
        hangup_cause=HANGUP_CAUSE.number(call.hangup_cause),
        participants=[
            pb.Participant(number=p.number, muted=p.muted, on_hold=p.on_hold, owner=p.owner)
            for p in call.participants
        ],
        muted=call.muted,
        on_hold=call.on_hold,
        recording=call.recording,
        create_time=timestamp(call.create_time),
        update_time=timestamp(call.update_time),
        metadata=call.call_metadata or {},
        timeout=call.timeout_seconds,
        starred=call.starred,
        archived=call.archived,
        read=call.read,
        note=call.note,
        labels=[label.label for label in call.labels],
    )
    setattr(message, "from", call.from_party)  # `from` is a Python keyword
    if call.app_ref is not None:
        message.app_ref = call.app_ref
    elif call.webhook is not None:
        message.webhook = call.webhook
    if call.answer_time is not None:
        message.answer_time.CopyFrom(timestamp(call.answer_time))
    if call.end_time is not None:
        message.end_time.CopyFrom(timestamp(call.end_time))
        if call.answer_time is not None:
            message.duration.CopyFrom(duration(max(call.end_time - call.answer_time, timedelta(0))))
    return message


def handler_of(message: Any) -> tuple[str | None, str | None]:
    """(app_ref, webhook) of a request's `handler` oneof."""
    which = message.WhichOneof("handler")
    return (message.app_ref if which == "app_ref" else None, message.webhook if which == "webhook" else None)


def new_call_from(request: pb.CreateCallRequest) -> live.NewCall:
    app_ref, webhook = handler_of(request)
    return live.checked_new_call(
        from_party=getattr(request, "from"), to=request.to, caller_id=request.caller_id,
        device_id=request.device_id, app_ref=app_ref, webhook=webhook, timeout=request.timeout,
        metadata=request.metadata, request_id=request.request_id,
    )


def filter_from(message: pb.CallFilter) -> history.CallFilter:
    """The request's CallFilter, checked and normalised; every bad field is named `filter.<field>`."""
    v = Violations()
    raw = history.CallFilter(
        direction=DIRECTION.name(message.direction, "filter.direction", v) if message.direction else None,
        status=STATUS.name(message.status, "filter.status", v) if message.status else None,
        number=message.number or None,
        start_time=message.start_time.ToDatetime(timezone.utc) if message.HasField("start_time") else None,
        end_time=message.end_time.ToDatetime(timezone.utc) if message.HasField("end_time") else None,
        starred=optional(message, "starred"),
        archived=optional(message, "archived"),
        read=optional(message, "read"),
        label=message.label or None,
    )
    call_filter = history.checked_filter(v, raw)
    v.raise_if_any()
    return call_filter


def marks_from(request: pb.UpdateCallRecordRequest) -> history.Marks:
    return history.Marks(
        starred=optional(request, "starred"),
        archived=optional(request, "archived"),
        read=optional(request, "read"),
        note=optional(request, "note"),
        labels=list(request.labels) if request.set_labels else None,
    )
