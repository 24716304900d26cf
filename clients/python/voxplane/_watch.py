"""Watching call events: `for response in calls.watch_call_events(call_ref=ref): ...`.

WatchCallEvents streams until the caller stops it. The stream is an iterator of
WatchCallEventsResponse (an `event` or a `heartbeat`, each with the `cursor` to resume after it);
`cancel()` (or leaving its `with` block) ends it, and iteration then simply stops. A server error
raises the client's error class (e.g. NotFoundError), as every other method does.
`create_call(..., track=True)` returns the call and a stream of its events from its first one, so
nothing it does between the create and the watch is missed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import grpc

from ._client import Method
from ._errors import from_rpc_error
from .calls.v1 import calls_pb2 as pb

_WATCH = Method("WatchCallEvents", pb.WatchCallEventsRequest)
_CREATE = Method("CreateCall", pb.CreateCallRequest)


def _request(call_ref: str, cursor: str, heartbeat_interval: float | timedelta | None) -> pb.WatchCallEventsRequest:
    request = pb.WatchCallEventsRequest(call_ref=call_ref, cursor=cursor)
    if heartbeat_interval is not None:
        if not isinstance(heartbeat_interval, timedelta):
            heartbeat_interval = timedelta(seconds=heartbeat_interval)
        request.heartbeat_interval.FromTimedelta(heartbeat_interval)
    return request


class EventStream:
    """The responses of one WatchCallEvents or WatchMessageEvents, as they come."""

    def __init__(self, call: Any):
        self._call = call
        self._cancelled = False

    def __iter__(self) -> Iterator[pb.WatchCallEventsResponse]:
        return self

    def __next__(self) -> pb.WatchCallEventsResponse:
        try:
            return next(self._call)
        except grpc.RpcError as error:
            if self._cancelled:
                raise StopIteration from None
            raise from_rpc_error(error) from None

    def cancel(self) -> None:
        """Ends the stream (the server stops sending)."""
        self._cancelled = True
        self._call.cancel()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class AsyncEventStream:
    """EventStream, for `async for`."""

    def __init__(self, call: Any):
        self._call = call
        self._responses = call.__aiter__()
        self._cancelled = False

    def __aiter__(self) -> AsyncIterator[pb.WatchCallEventsResponse]:
        return self

    async def __anext__(self) -> pb.WatchCallEventsResponse:
        try:
            return await self._responses.__anext__()
        except grpc.RpcError as error:
            if self._cancelled:
                raise StopAsyncIteration from None
            raise from_rpc_error(error) from None
        except StopAsyncIteration:
            raise
        except (grpc.aio.UsageError, RuntimeError):  # iterating a call cancelled meanwhile
            if self._cancelled:
                raise StopAsyncIteration from None
            raise

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()


class CallWatch:
    """Mixed into `Calls` (blocking)."""

    def watch_call_events(
        self, call_ref: str = "", cursor: str = "", heartbeat_interval: float | timedelta | None = None, *,
        timeout: float | None = None,
    ) -> EventStream:
        """The events of call `call_ref` (empty: of every call of the workspace) after `cursor` (empty:
        from the call's first event, or from now for the whole workspace), with a heartbeat every
        `heartbeat_interval` seconds while none comes (None: 15). `timeout` bounds the stream in seconds
        (None: it runs until cancelled)."""
        client: Any = self
        call = client._rpc(_WATCH)(_request(call_ref, cursor, heartbeat_interval), timeout=timeout,
                                   metadata=client._metadata)
        return EventStream(call)

    def create_call(self, request: Any = None, /, *, track: bool = False, **fields: Any) -> Any:
        """Calls CreateCall with a CreateCallRequest (message, dict or keywords). With `track`, returns
        (call, stream): the stream of the call's events from its first one (see watch_call_events)."""
        client: Any = self
        call = client._invoke(_CREATE, _CREATE.build(request, fields))
        return (call, self.watch_call_events(call.ref)) if track else call


class AsyncCallWatch:
    """Mixed into `AsyncCalls` (asyncio): the same, for `async for`."""

    def watch_call_events(
        self, call_ref: str = "", cursor: str = "", heartbeat_interval: float | timedelta | None = None, *,
        timeout: float | None = None,
    ) -> AsyncEventStream:
        """Calls.watch_call_events, as an async iterator."""
        client: Any = self
        call = client._rpc(_WATCH)(_request(call_ref, cursor, heartbeat_interval), timeout=timeout,
                                   metadata=client._metadata)
        return AsyncEventStream(call)

    async def create_call(self, request: Any = None, /, *, track: bool = False, **fields: Any) -> Any:
        """Calls.create_call, awaited."""
        client: Any = self
        call = await client._invoke(_CREATE, _CREATE.build(request, fields))
        return (call, self.watch_call_events(call.ref)) if track else call
