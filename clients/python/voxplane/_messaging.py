"""Messaging and AsyncMessaging: the Messaging service's RPCs, as in the Fonoster SDK."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc

from ._client import AsyncClient, Method, Pages, SyncClient
from ._errors import from_rpc_error
from ._watch import AsyncEventStream, EventStream
from .messaging.v1 import messaging_pb2 as pb
from .messaging.v1 import messaging_pb2_grpc


class _MessagingMethods:
    stub_type = messaging_pb2_grpc.MessagingStub

    send_message = Method("SendMessage", pb.SendMessageRequest)
    cancel_message = Method("CancelMessage", pb.CancelMessageRequest, positional="ref")
    get_message = Method("GetMessage", pb.GetMessageRequest, positional="ref")
    list_messages = Method("ListMessages", pb.ListMessagesRequest)
    delete_messages = Method("DeleteMessages", pb.DeleteMessagesRequest)
    iter_messages = Pages("list_messages", "messages")

    get_fax = Method("GetFax", pb.GetFaxRequest, positional="ref")
    create_faxline = Method("CreateFaxline", pb.CreateFaxlineRequest)
    get_faxline = Method("GetFaxline", pb.GetFaxlineRequest, positional="ref")
    list_faxlines = Method("ListFaxlines", pb.ListFaxlinesRequest)
    update_faxline = Method("UpdateFaxline", pb.UpdateFaxlineRequest)
    delete_faxline = Method("DeleteFaxline", pb.DeleteFaxlineRequest, positional="ref")
    iter_faxlines = Pages("list_faxlines", "faxlines")

    get_messaging_settings = Method("GetMessagingSettings", pb.GetMessagingSettingsRequest)
    update_messaging_settings = Method("UpdateMessagingSettings", pb.UpdateMessagingSettingsRequest)
    simulate_inbound_message = Method("SimulateInboundMessage", pb.SimulateInboundMessageRequest)


_SEND_FAX = Method("SendFax", pb.SendFaxRequest)
_WATCH = Method("WatchMessageEvents", pb.WatchMessageEventsRequest)


def _watch_request(message_ref: str, cursor: str, heartbeat_interval: float | timedelta | None
                   ) -> pb.WatchMessageEventsRequest:
    request = pb.WatchMessageEventsRequest(message_ref=message_ref, cursor=cursor)
    if heartbeat_interval is not None:
        if not isinstance(heartbeat_interval, timedelta):
            heartbeat_interval = timedelta(seconds=heartbeat_interval)
        request.heartbeat_interval.FromTimedelta(heartbeat_interval)
    return request
CHUNK = 1024 * 1024  # what SendFax takes in one message


def _pdf_bytes(pdf: bytes | str | os.PathLike[str]) -> bytes:
    return pdf if isinstance(pdf, bytes) else Path(pdf).read_bytes()


def _fax_stream(pdf: bytes, header: dict[str, Any]) -> Iterator[pb.SendFaxRequest]:
    yield pb.SendFaxRequest(header=_SEND_FAX.build({"header": header}, {}).header, chunk=pdf[:CHUNK])
    for start in range(CHUNK, len(pdf), CHUNK):
        yield pb.SendFaxRequest(chunk=pdf[start:start + CHUNK])


class Messaging(_MessagingMethods, SyncClient):
    """Blocking client of the Messaging service.

    >>> messaging = Messaging(endpoint="127.0.0.1:50051", api_key="vxp_...")
    >>> sms = messaging.send_message(source="+14155550100", destination="+15005550001", body="Hello")
    >>> messaging.get_message(sms.ref).status  # QUEUED, then SENDING, SENT, DELIVERED
    """

    def watch_message_events(
        self, message_ref: str = "", cursor: str = "", heartbeat_interval: float | timedelta | None = None, *,
        timeout: float | None = None,
    ) -> EventStream:
        """The events of message `message_ref` (empty: of every message of the workspace) after `cursor`, as
        Calls.watch_call_events streams a call's: WatchMessageEventsResponse, each with its cursor."""
        call = self._rpc(_WATCH)(_watch_request(message_ref, cursor, heartbeat_interval), timeout=timeout,
                                 metadata=self._metadata)
        return EventStream(call)

    def send_fax(self, pdf: bytes | str | os.PathLike[str], **header: Any) -> pb.Fax:
        """Sends the PDF (its bytes or a path) as a fax: `faxline_ref`, `destination`, and optionally
        `filename`, `send_time`, `webhook` as FaxHeader names them. Streamed in 1 MB chunks."""
        data = _pdf_bytes(pdf)
        if "filename" not in header and not isinstance(pdf, bytes):
            header["filename"] = Path(pdf).name
        try:
            return self._rpc(_SEND_FAX)(_fax_stream(data, header), timeout=self.options.timeout,
                                        metadata=self._metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None


class AsyncMessaging(_MessagingMethods, AsyncClient):
    """asyncio client of the Messaging service: the same methods, awaited."""

    def watch_message_events(
        self, message_ref: str = "", cursor: str = "", heartbeat_interval: float | timedelta | None = None, *,
        timeout: float | None = None,
    ) -> AsyncEventStream:
        """Messaging.watch_message_events, as an async iterator."""
        call = self._rpc(_WATCH)(_watch_request(message_ref, cursor, heartbeat_interval), timeout=timeout,
                                 metadata=self._metadata)
        return AsyncEventStream(call)

    async def send_fax(self, pdf: bytes | str | os.PathLike[str], **header: Any) -> pb.Fax:
        """As Messaging.send_fax, awaited."""
        data = _pdf_bytes(pdf)
        if "filename" not in header and not isinstance(pdf, bytes):
            header["filename"] = Path(pdf).name

        async def stream() -> AsyncIterator[pb.SendFaxRequest]:
            for request in _fax_stream(data, header):
                yield request

        try:
            return await self._rpc(_SEND_FAX)(stream(), timeout=self.options.timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
