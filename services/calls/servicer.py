"""Calls over gRPC: placing calls and controlling them while they run. The history RPCs are in servicer_history.

Proto in, a call of the Runner (the network side of this process) or of the rules, proto out.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence

from sqlalchemy.orm import Session

from voxplane.calls.v1 import calls_pb2 as pb
from voxplane.calls.v1 import calls_pb2_grpc

from ..core.auth import Access, Caller
from ..core.metrics import Reading
from ..core.paging import PageTokens
from ..core.resources import get_owned
from ..core.rpc import Incoming, rpc
from ..core.servicer import Servicer
from ..events import watching
from ..persistence.db import Database
from . import events, guards, live, recordings, states
from .messages import (
    call_proto,
    call_settings_proto,
    call_settings_update,
    event_replies,
    new_call_from,
    recording_proto,
    routed_proto,
    simulated_call_from,
)
from .models import Call
from .runner import Runner
from .servicer_history import HistoryRpcs

Control = states.Control
RECORDING_CHUNK = 256 * 1024  # bytes of a recording per message: well under gRPC's 4 MB default


class CallsServicer(HistoryRpcs, Servicer, calls_pb2_grpc.CallsServicer):
    """The Calls service: the network behind the Runner's CallGateway; parties checked with their services."""

    service_name = pb.DESCRIPTOR.services_by_name["Calls"].full_name

    def __init__(self, db: Database, tokens: PageTokens, runner: Runner):
        super().__init__(db, tokens)
        self.runner = runner
        self.replies = event_replies(tokens)

    def metrics(self) -> Sequence[Reading]:
        return [live.live_by_status]

    @rpc(Access.WRITE)
    async def CreateCall(self, request: pb.CreateCallRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        return call_proto(await self.runner.create(caller, incoming, new_call_from(request)))

    @rpc(Access.READ)
    def GetCall(self, request: pb.GetCallRequest, caller: Caller, session: Session) -> pb.Call:
        return call_proto(get_owned(session, Call, caller, request.ref))

    @rpc(Access.READ)
    def ListActiveCalls(
        self, request: pb.ListActiveCallsRequest, caller: Caller, session: Session
    ) -> pb.ListActiveCallsResponse:
        calls, next_token = self.tokens.page(
            f"active-calls/{caller.workspace_id}",
            request,
            lambda after, size: live.list_active(session, caller, after, size),
        )
        return pb.ListActiveCallsResponse(calls=[call_proto(c) for c in calls], next_page_token=next_token)

    @rpc(Access.WRITE)
    async def HangupCall(self, request: pb.HangupCallRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        return call_proto(await self.runner.control(
            caller, request.ref, Control.HANGUP, lambda network, ref: network.hangup(ref),
            live.ending(states.NORMAL_CLEARING),
        ))

    @rpc(Access.WRITE)
    async def CancelCall(self, request: pb.CancelCallRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        return call_proto(await self.runner.control(
            caller, request.ref, Control.CANCEL, lambda network, ref: network.cancel(ref), live.ending(states.CANCEL)
        ))

    @rpc(Access.WRITE)
    async def MuteCall(self, request: pb.MuteCallRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        return call_proto(await self.runner.control(
            caller, request.ref, Control.MUTE, lambda network, ref: network.mute(ref, request.mute),
            live.muting(request.mute),
        ))

    @rpc(Access.WRITE)
    async def HoldCall(self, request: pb.HoldCallRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        return call_proto(await self.runner.control(
            caller, request.ref, Control.HOLD, lambda network, ref: network.hold(ref, request.hold),
            live.holding(request.hold),
        ))

    @rpc(Access.WRITE)
    async def RecordCall(self, request: pb.RecordCallRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        return call_proto(await self.runner.control(
            caller, request.ref, Control.RECORD, lambda network, ref: network.record(ref, request.start),
            live.recording(request.start),
        ))

    @rpc(Access.WRITE)
    async def PlayAudio(self, request: pb.PlayAudioRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        url = live.checked_url(request.url)
        return call_proto(await self.runner.control(
            caller, request.ref, Control.PLAY, lambda network, ref: network.play(ref, url), live.playing(url)
        ))

    @rpc(Access.WRITE)
    async def TransferCall(self, request: pb.TransferCallRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        to = live.checked_transfer_target(request.destination)
        return call_proto(await self.runner.control(
            caller, request.ref, Control.TRANSFER, lambda network, ref: network.transfer(ref, to, request.attended),
            live.transferring(to, request.attended), dials=to,
        ))

    @rpc(Access.WRITE)
    async def SendDtmf(self, request: pb.SendDtmfRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        digits = live.checked_digits(request.digits)
        return call_proto(await self.runner.control(
            caller, request.ref, Control.DTMF, lambda network, ref: network.send_dtmf(ref, digits), live.unchanged
        ))

    @rpc(Access.WRITE)
    async def RedirectCall(self, request: pb.RedirectCallRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        webhook = live.checked_redirect(request.webhook)
        return call_proto(await self.runner.control(
            caller, request.ref, Control.REDIRECT, lambda network, ref: network.redirect(ref, webhook),
            live.redirecting(webhook),
        ))

    @rpc(Access.READ)
    async def GetCallRecording(
        self, request: pb.GetCallRecordingRequest, caller: Caller, incoming: Incoming
    ) -> AsyncIterator[pb.CallRecordingChunk]:
        """The WAV is read in one short transaction, then streamed in chunks that fit any message limit."""
        found = await self.db.run_transaction(lambda s: recording_proto(recordings.recording_of(s, caller, request.ref)),
                                              write=False)
        described, data = found
        for at in range(0, max(len(data), 1), RECORDING_CHUNK):
            yield pb.CallRecordingChunk(data=data[at : at + RECORDING_CHUNK], recording=described if at == 0 else None)

    @rpc(Access.READ)
    async def WatchCallEvents(
        self, request: pb.WatchCallEventsRequest, caller: Caller, incoming: Incoming
    ) -> AsyncIterator[pb.WatchCallEventsResponse]:
        start = functools.partial(events.watch_start, caller=caller, call_ref=request.call_ref)
        async for message in watching.stream(self.db, self.runner.feed, self.replies, caller.workspace_id, request,
                                             request.call_ref, start):
            yield message

    @rpc(Access.READ)
    def GetCallSettings(self, request: pb.GetCallSettingsRequest, caller: Caller, session: Session) -> pb.CallSettings:
        return call_settings_proto(guards.settings_of(session, caller.workspace_id))

    @rpc(Access.WRITE)
    def UpdateCallSettings(
        self, request: pb.UpdateCallSettingsRequest, caller: Caller, session: Session
    ) -> pb.CallSettings:
        return call_settings_proto(guards.update_settings(session, caller.workspace_id, call_settings_update(request)))

    @rpc(Access.OPERATE)
    async def SimulateInboundCall(
        self, request: pb.SimulateInboundCallRequest, caller: Caller, incoming: Incoming
    ) -> pb.SimulateInboundCallResponse:
        return routed_proto(await self.runner.simulate_inbound(simulated_call_from(request)))
