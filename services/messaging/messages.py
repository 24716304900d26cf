"""Messaging's conversions between proto messages and the rules' objects, for every servicer module."""

from __future__ import annotations

from collections.abc import AsyncIterator

from voxplane.messaging.v1 import messaging_pb2 as pb

from ..core.convert import ProtoEnum, changed_fields, optional, time_of, timestamp
from ..core.errors import InvalidArgument, Violations
from ..core.paging import PageTokens
from ..events.watching import StreamReplies
from ..persistence.base import utcnow
from . import events, faxes, history, sending
from .models import Faxline, Message, MessagingSettings

DIRECTION = ProtoEnum(pb.Direction)
TYPE = ProtoEnum(pb.MessageType)
STATUS = ProtoEnum(pb.MessageStatus)
ENCODING = ProtoEnum(pb.Encoding)
FAX_FAILURE = ProtoEnum(pb.FaxFailureReason)
FAXLINE_FIELDS = ("alias", "tagline", "can_send", "can_receive")
EVENT_TYPE = ProtoEnum(pb.MessageEventType)


def event_replies(tokens: PageTokens) -> StreamReplies:
    """What WatchMessageEvents answers: the call events' stream machinery (services/events/watching.py)."""
    return StreamReplies(tokens, events.TOPIC, pb.WatchMessageEventsResponse, pb.MessageEvent, pb.StreamHeartbeat,
                         "message_ref", EVENT_TYPE)


def _history(message: Message | sending.Stored) -> list[pb.StatusChange]:
    return [pb.StatusChange(status=STATUS.number(c.status), time=timestamp(c.time)) for c in message.changes]


def fax_proto(message: Message) -> pb.Fax:
    fax = pb.Fax(
        ref=message.ref, faxline_ref=message.faxline_ref, source=message.source, destination=message.destination,
        filename=message.filename, page_count=message.page_count, size_bytes=message.size_bytes,
        status=STATUS.number(message.status), attempts=message.attempts, status_history=_history(message),
        create_time=timestamp(message.create_time), update_time=timestamp(message.update_time),
    )
    if message.status == "FAILED":
        fax.failure_reason = FAX_FAILURE.number(message.fax_failure or None)
    if message.send_time is not None:
        fax.send_time.CopyFrom(timestamp(message.send_time))
    return fax


def message_proto(message: Message | sending.Stored) -> pb.Message:
    proto = pb.Message(
        ref=message.ref, type=TYPE.number(message.type), direction=DIRECTION.number(message.direction),
        source=message.source, destination=message.destination, body=message.body,
        encoding=ENCODING.number(message.encoding or None), num_segments=message.num_segments,
        status=STATUS.number(message.status), status_history=_history(message),
        failure_reason=message.failure_reason, webhook=message.webhook or "",
        create_time=timestamp(message.create_time), update_time=timestamp(message.update_time), etag=message.etag,
    )
    if message.send_time is not None:
        proto.send_time.CopyFrom(timestamp(message.send_time))
    if isinstance(message, Message) and message.type == "FAX":
        proto.fax.CopyFrom(fax_proto(message))
    return proto


def new_message_from(request: pb.SendMessageRequest) -> sending.NewMessage:
    v = Violations()
    send_time = time_of(request, "send_time", v)
    v.raise_if_any()
    return sending.checked_new_message(request.source, request.destination, request.body, send_time,
                                       request.webhook, request.request_id, utcnow())


def new_fax_from(header: pb.FaxHeader) -> faxes.NewFax:
    v = Violations()
    send_time = time_of(header, "send_time", v, "header.send_time")
    v.raise_if_any()
    return faxes.checked_new_fax(header.faxline_ref, header.destination, header.filename, send_time, header.webhook,
                                 utcnow())


def filter_from(message: pb.MessageFilter) -> history.MessageFilter:
    v = Violations()
    raw = history.MessageFilter(
        direction=DIRECTION.name(message.direction, "filter.direction", v) if message.direction else None,
        type=TYPE.name(message.type, "filter.type", v) if message.type else None,
        status=STATUS.name(message.status, "filter.status", v) if message.status else None,
        number=message.number or None,
        created_after=time_of(message, "created_after", v, "filter.created_after"),
        created_before=time_of(message, "created_before", v, "filter.created_before"),
    )
    checked = history.checked_filter(v, raw)
    v.raise_if_any()
    return checked


def faxline_proto(line: Faxline) -> pb.Faxline:
    return pb.Faxline(
        ref=line.ref, number=line.number, alias=line.alias, tagline=line.tagline, can_send=line.can_send,
        can_receive=line.can_receive, create_time=timestamp(line.create_time),
        update_time=timestamp(line.update_time), etag=line.etag,
    )


def faxline_create_fields(request: pb.CreateFaxlineRequest) -> faxes.FaxlineFields:
    return faxes.FaxlineFields(request.alias, request.tagline, optional(request, "can_send"),
                               optional(request, "can_receive"))


def faxline_update_fields(request: pb.UpdateFaxlineRequest) -> faxes.FaxlineFields:
    changes = changed_fields(request, FAXLINE_FIELDS)
    return faxes.FaxlineFields(**{name: getattr(request, name) if name in changes else None for name in FAXLINE_FIELDS})


def help_reply_update(request: pb.UpdateMessagingSettingsRequest) -> str | None:
    return request.help_reply if "help_reply" in changed_fields(request, ("help_reply",)) else None


def settings_proto(settings: MessagingSettings) -> pb.MessagingSettings:
    proto = pb.MessagingSettings(help_reply=settings.help_reply)
    if settings.update_time is not None:
        proto.update_time.CopyFrom(timestamp(settings.update_time))
    return proto


async def fax_upload(requests: AsyncIterator[pb.SendFaxRequest]) -> tuple[pb.FaxHeader, bytes]:
    """The header of a SendFax stream (its first message) and the PDF its chunks carry, at most 20 MB."""
    header: pb.FaxHeader | None = None
    parts: list[bytes] = []
    size = 0
    async for request in requests:
        if header is None:
            if not request.HasField("header"):
                raise InvalidArgument.of("header", "the stream's first message must carry the header")
            header = request.header
        elif request.HasField("header"):
            raise InvalidArgument.of("header", "only the stream's first message may carry the header")
        if len(request.chunk) > faxes.CHUNK_BYTES:
            raise InvalidArgument.of("chunk", f"must be at most {faxes.CHUNK_BYTES:,} bytes, got {len(request.chunk):,}")
        size += len(request.chunk)
        if size > faxes.MAX_PDF_BYTES:
            raise faxes.too_large(faxes.MAX_PDF_BYTES)
        parts.append(request.chunk)
    if header is None:
        raise InvalidArgument.of("header", "is required: the stream was empty")
    return header, b"".join(parts)
