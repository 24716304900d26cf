"""Fetching a call's recording, a WAV file: `calls.get_call_recording(ref)`.

GetCallRecording streams the file in chunks, the first of which describes it; this gathers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from ._client import Method
from ._errors import from_rpc_error
from .calls.v1 import calls_pb2 as pb

_GET_RECORDING = Method("GetCallRecording", pb.GetCallRecordingRequest, positional="ref")


@dataclass(frozen=True)
class CallRecordingFile:
    """A call's recording: what it is (content type, duration, size, channels, sample rate), and the file."""

    recording: pb.CallRecording
    data: bytes


def _gathered(chunks: list[pb.CallRecordingChunk]) -> CallRecordingFile:
    return CallRecordingFile(chunks[0].recording if chunks else pb.CallRecording(),
                             b"".join(chunk.data for chunk in chunks))


class CallRecordings:
    """Mixed into `Calls` (blocking)."""

    def get_call_recording(self, ref: str, *, timeout: float | None = 60) -> CallRecordingFile:
        """The recording of call `ref`: its description and the WAV file's bytes. NotFoundError when the call
        has none (the simulated network records no audio)."""
        client: Any = self
        stream = client._rpc(_GET_RECORDING)(_GET_RECORDING.build(ref, {}), timeout=timeout, metadata=client._metadata)
        try:
            return _gathered(list(stream))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            stream.cancel()


class AsyncCallRecordings:
    """Mixed into `AsyncCalls` (asyncio)."""

    async def get_call_recording(self, ref: str, *, timeout: float | None = 60) -> CallRecordingFile:
        """Calls.get_call_recording, awaited."""
        client: Any = self
        stream = client._rpc(_GET_RECORDING)(_GET_RECORDING.build(ref, {}), timeout=timeout, metadata=client._metadata)
        try:
            return _gathered([chunk async for chunk in stream])
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            stream.cancel()
