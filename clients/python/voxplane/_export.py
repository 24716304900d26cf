"""Saving the call history as a CSV file, of any size: `calls.export_calls(path, filter)`.

ExportCalls streams the CSV in chunks; each chunk is written to the file as it arrives, so memory
stays flat however long the history. The file appears at `path` only once the export is whole: the
chunks go to `<path>.part`, renamed when the stream ends and removed if it fails.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import grpc

from ._client import Method
from ._errors import from_rpc_error
from .calls.v1 import calls_pb2 as pb

_EXPORT = Method("ExportCalls", pb.ExportCallsRequest)

CallFilter = pb.CallFilter | Mapping[str, Any] | None


def _request(call_filter: CallFilter) -> pb.ExportCallsRequest:
    if isinstance(call_filter, pb.CallFilter):
        return pb.ExportCallsRequest(filter=call_filter)
    return _EXPORT.build({"filter": dict(call_filter)} if call_filter else None, {})


class _RowCounter:
    """Counts CSV records in a stream of chunks: line ends outside quoted fields (a note may hold one)."""

    def __init__(self) -> None:
        self.lines = 0
        self.quoted = False

    def feed(self, data: bytes) -> None:
        for i, part in enumerate(data.split(b'"')):
            if i:
                self.quoted = not self.quoted
            if not self.quoted:
                self.lines += part.count(b"\n")

    @property
    def rows(self) -> int:
        return max(0, self.lines - 1)  # the header is not a call


class _PartFile:
    """`<path>.part` while the export runs; renamed to `path` on success, removed on failure."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + ".part")
        self.file: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        self.file = self.part.open("wb")
        return self.file

    def __exit__(self, error_type: object, *exc: object) -> None:
        assert self.file is not None
        self.file.close()
        if error_type is None:
            os.replace(self.part, self.path)
        else:
            self.part.unlink(missing_ok=True)


class CallExport:
    """Mixed into `Calls` (blocking)."""

    def export_calls(
        self, path: str | os.PathLike[str], filter: CallFilter = None, *, timeout: float | None = None  # noqa: A002
    ) -> int:
        """Saves the calls matching `filter` (a CallFilter or a dict of its fields; None: every call),
        newest first, as a CSV file at `path` with a header row; returns the number of calls written.

        `timeout` bounds the whole export in seconds (None: no limit, as a large history takes a while).
        An error raises the server's error (e.g. InvalidArgumentError for a bad filter) and leaves no file.
        """
        client: Any = self
        counter = _RowCounter()
        stream = client._rpc(_EXPORT)(_request(filter), timeout=timeout, metadata=client._metadata)
        try:
            with _PartFile(path) as file:
                for chunk in stream:
                    file.write(chunk.data)
                    counter.feed(chunk.data)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            stream.cancel()  # a no-op once the stream ended; stops the server if we did not get that far
        return counter.rows


class AsyncCallExport:
    """Mixed into `AsyncCalls` (asyncio): the same, with the file written off the event loop."""

    async def export_calls(
        self, path: str | os.PathLike[str], filter: CallFilter = None, *, timeout: float | None = None  # noqa: A002
    ) -> int:
        """Calls.export_calls, awaited."""
        client: Any = self
        counter = _RowCounter()
        stream = client._rpc(_EXPORT)(_request(filter), timeout=timeout, metadata=client._metadata)
        try:
            part = _PartFile(path)
            file = await asyncio.to_thread(part.__enter__)
            try:
                async for chunk in stream:
                    await asyncio.to_thread(file.write, chunk.data)
                    counter.feed(chunk.data)
            except BaseException as error:
                await asyncio.to_thread(part.__exit__, type(error), error, None)
                raise
            await asyncio.to_thread(part.__exit__, None, None, None)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            stream.cancel()
        return counter.rows
