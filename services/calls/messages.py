"""Calls' conversions between proto messages and the rules' objects, for every servicer module."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration

from voxplane.calls.v1 import calls_pb2 as pb

from ..core.convert import ProtoEnum, changed_fields, duration, optional, time_of, timedelta_of, timestamp
from ..core.errors import InvalidArgument, Violations
from ..core.paging import InvalidToken, PageTokens
from ..events.models import Event
from ..events.outbox import Position
from . import events, history, inbound, live
from .models import Call

DIRECTION = ProtoEnum(pb.Direction)
STATUS = ProtoEnum(pb.CallStatus)
HANGUP_CAUSE = ProtoEnum(pb.HangupCause)
EVENT_TYPE = ProtoEnum(pb.CallEventType)


def call_proto(call: Call) -> pb.Call:
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
            for p in call.participants
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
        labels=[label.label for label in call.labels],
        etag=call.etag,
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


def call_event_proto(row: Event) -> pb.CallEvent:
    """An outbox row of a call as the CallEvent it stores: its columns, and its payload (events.py)."""
    message = pb.CallEvent(
        event_id=row.ref, call_ref=row.resource_ref, sequence=row.sequence, type=EVENT_TYPE.number(row.type),
        network_time=timestamp(row.network_time),
    )
    json_format.ParseDict(row.payload, message, ignore_unknown_fields=True)
    return message


def _cursor_scope(workspace_id: int) -> str:
    return f"call-events/{workspace_id}"


def cursor_token(tokens: PageTokens, workspace_id: int, cursor: events.Cursor) -> str:
    """A cursor as callers see it: opaque, and only good for the workspace's streams."""
    position = cursor.position
    return tokens.issue(_cursor_scope(workspace_id), f"{position.txid}:{position.id}:{cursor.time.timestamp():.6f}")


def cursor_of(tokens: PageTokens, workspace_id: int, token: str) -> events.Cursor | None:
    """The cursor a WatchCallEventsRequest resumes after; None for none."""
    if not token:
        return None
    try:
        txid, row_id, seconds = tokens.unseal(_cursor_scope(workspace_id), token).split(":")
        return events.Cursor(Position(int(txid), int(row_id)), datetime.fromtimestamp(float(seconds), UTC))
    except (InvalidToken, ValueError):
        raise InvalidArgument.of(
            "cursor", "is not a cursor a stream of this workspace sent; watch again without one"
        ) from None


def event_response(tokens: PageTokens, row: Event) -> pb.WatchCallEventsResponse:
    cursor = events.Cursor(Position(row.txid, row.id), row.create_time)
    return pb.WatchCallEventsResponse(
        cursor=cursor_token(tokens, row.workspace_id, cursor), event=call_event_proto(row)
    )


def heartbeat_response(tokens: PageTokens, workspace_id: int, position: Position, time: datetime
                       ) -> pb.WatchCallEventsResponse:
    return pb.WatchCallEventsResponse(
        cursor=cursor_token(tokens, workspace_id, events.Cursor(position, time)),
        heartbeat=pb.StreamHeartbeat(time=timestamp(datetime.now(UTC))),
    )


def heartbeat_from(request: pb.WatchCallEventsRequest) -> float:
    v = Violations()
    interval = timedelta_of(request, "heartbeat_interval", v)
    v.raise_if_any()
    return events.checked_heartbeat(interval)


def simulated_call_from(request: pb.SimulateInboundCallRequest) -> inbound.SimulatedCall:
    return inbound.checked_simulated_call(request.source, request.destination, request.digits)


def routed_proto(routed: inbound.Routed) -> pb.SimulateInboundCallResponse:
    if routed.call is None:
        return pb.SimulateInboundCallResponse(hangup_cause=HANGUP_CAUSE.number(routed.rejected_cause))
    return pb.SimulateInboundCallResponse(call=call_proto(routed.call))
