"""Messaging over gRPC: proto in, a call of the Runner (this process's worker and batchers) or of the
rules, proto out."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

from sqlalchemy.orm import Session

from voxplane.messaging.v1 import messaging_pb2 as pb
from voxplane.messaging.v1 import messaging_pb2_grpc

from ..core.auth import Access, Caller
from ..core.paging import PageTokens
from ..core.resources import get_owned
from ..core.rpc import Incoming, rpc
from ..core.servicer import Servicer
from ..events import watching
from ..persistence.db import Database
from ..persistence.export import csv_chunks
from . import events, faxes, history, sending
from .messages import (
    event_replies,
    fax_proto,
    fax_upload,
    faxline_create_fields,
    faxline_proto,
    faxline_update_fields,
    filter_from,
    help_reply_update,
    message_proto,
    new_fax_from,
    new_message_from,
    settings_proto,
)
from .models import Faxline, Message
from .runner import Runner


class MessagingServicer(Servicer, messaging_pb2_grpc.MessagingServicer):
    """The Messaging service: sends through the Runner's carrier; senders checked with Numbers."""

    service_name = pb.DESCRIPTOR.services_by_name["Messaging"].full_name

    def __init__(self, db: Database, tokens: PageTokens, runner: Runner):
        super().__init__(db, tokens)
        self.runner = runner
        self.replies = event_replies(tokens)

    @rpc(Access.WRITE)
    async def SendMessage(self, request: pb.SendMessageRequest, caller: Caller, incoming: Incoming) -> pb.Message:
        return message_proto(await self.runner.send(caller, incoming, new_message_from(request)))

    @rpc(Access.WRITE)
    def CancelMessage(self, request: pb.CancelMessageRequest, caller: Caller, session: Session) -> pb.Message:
        return message_proto(sending.cancel(session, caller, request.ref))

    @rpc(Access.READ)
    def GetMessage(self, request: pb.GetMessageRequest, caller: Caller, session: Session) -> pb.Message:
        return message_proto(get_owned(session, Message, caller, request.ref))

    @rpc(Access.READ)
    def ListMessages(
        self, request: pb.ListMessagesRequest, caller: Caller, session: Session
    ) -> pb.ListMessagesResponse:
        message_filter = filter_from(request.filter)
        found, next_token = self.tokens.page(
            history.scope(caller, message_filter), request,
            lambda before, size: history.list_messages(session, caller, message_filter, before, size),
        )
        return pb.ListMessagesResponse(messages=[message_proto(m) for m in found], next_page_token=next_token)

    @rpc(Access.WRITE)
    def DeleteMessages(
        self, request: pb.DeleteMessagesRequest, caller: Caller, session: Session
    ) -> pb.DeleteMessagesResponse:
        history.delete_messages(session, caller, request.refs)
        return pb.DeleteMessagesResponse()

    @rpc(Access.READ)
    async def ExportMessages(
        self, request: pb.ExportMessagesRequest, caller: Caller, incoming: Incoming
    ) -> AsyncIterator[pb.ExportMessagesChunk]:
        """One chunk per database round trip (one short read transaction each), so memory stays flat."""
        chunk = functools.partial(history.export_chunk, caller=caller, f=filter_from(request.filter))
        async for data in csv_chunks(self.db, history.export_header(), chunk):
            yield pb.ExportMessagesChunk(data=data)

    @rpc(Access.READ)
    async def WatchMessageEvents(
        self, request: pb.WatchMessageEventsRequest, caller: Caller, incoming: Incoming
    ) -> AsyncIterator[pb.WatchMessageEventsResponse]:
        start = functools.partial(events.watch_start, caller=caller, message_ref=request.message_ref)
        async for message in watching.stream(self.db, self.runner.feed, self.replies, caller.workspace_id, request,
                                             request.message_ref, start):
            yield message

    @rpc(Access.WRITE)
    async def SendFax(self, request: AsyncIterator[pb.SendFaxRequest], caller: Caller, incoming: Incoming) -> pb.Fax:
        header, pdf = await fax_upload(request)
        return fax_proto(await self.runner.send_fax(caller, new_fax_from(header), pdf))

    @rpc(Access.READ)
    def GetFax(self, request: pb.GetFaxRequest, caller: Caller, session: Session) -> pb.Fax:
        return fax_proto(faxes.get_fax(session, caller, request.ref))

    @rpc(Access.WRITE)
    async def CreateFaxline(self, request: pb.CreateFaxlineRequest, caller: Caller, incoming: Incoming) -> pb.Faxline:
        fields = faxline_create_fields(request)
        return faxline_proto(await self.runner.create_faxline(caller, incoming, request.number, fields))

    @rpc(Access.READ)
    def GetFaxline(self, request: pb.GetFaxlineRequest, caller: Caller, session: Session) -> pb.Faxline:
        return faxline_proto(get_owned(session, Faxline, caller, request.ref))

    @rpc(Access.READ)
    def ListFaxlines(self, request: pb.ListFaxlinesRequest, caller: Caller, session: Session) -> pb.ListFaxlinesResponse:
        lines, next_token = self.tokens.page(
            f"faxlines/{caller.workspace_id}", request,
            lambda after, size: faxes.list_faxlines(session, caller, after, size),
        )
        return pb.ListFaxlinesResponse(faxlines=[faxline_proto(line) for line in lines], next_page_token=next_token)

    @rpc(Access.WRITE)
    def UpdateFaxline(self, request: pb.UpdateFaxlineRequest, caller: Caller, session: Session) -> pb.Faxline:
        fields = faxline_update_fields(request)
        return faxline_proto(faxes.update_faxline(session, caller, request.ref, fields, request.etag))

    @rpc(Access.WRITE)
    def DeleteFaxline(
        self, request: pb.DeleteFaxlineRequest, caller: Caller, session: Session
    ) -> pb.DeleteFaxlineResponse:
        faxes.delete_faxline(session, caller, request.ref, request.etag)
        return pb.DeleteFaxlineResponse()

    @rpc(Access.READ)
    def GetMessagingSettings(
        self, request: pb.GetMessagingSettingsRequest, caller: Caller, session: Session
    ) -> pb.MessagingSettings:
        return settings_proto(sending.settings_of(session, caller))

    @rpc(Access.WRITE)
    def UpdateMessagingSettings(
        self, request: pb.UpdateMessagingSettingsRequest, caller: Caller, session: Session
    ) -> pb.MessagingSettings:
        return settings_proto(sending.update_settings(session, caller, help_reply_update(request)))

    @rpc(Access.OPERATE)
    async def SimulateInboundMessage(
        self, request: pb.SimulateInboundMessageRequest, caller: Caller, incoming: Incoming
    ) -> pb.Message:
        return message_proto(await self.runner.simulate_inbound(request.source, request.destination, request.body))
