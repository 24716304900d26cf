"""Calls over gRPC: placing calls and controlling them while they run. The history RPCs are in servicer_history."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

from google.protobuf.duration_pb2 import Duration
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from voxplane.calls.v1 import calls_pb2 as pb
from voxplane.calls.v1 import calls_pb2_grpc

from ..core import config
from ..core.auth import Access, Caller
from ..core.convert import timestamp
from ..core.errors import InvalidArgument, Unavailable
from ..core.paging import PageTokens
from ..core.rpc import Incoming, rpc
from ..persistence.base import new_ref
from ..persistence.db import Database
from . import live, states
from .directory import Services
from .gateway import CallGateway, GatewayEvent, SimulatedGateway
from .models import Call
from .recorder import EventRecorder
from .servicer_history import HistoryRpcs

log = logging.getLogger("voxplane.calls")
Control = states.Control


def call_proto(call: Call) -> pb.Call:
    message = pb.Call(
        ref=call.ref,
        to=call.to_party,
        caller_id=call.caller_id,
        device_id=call.device_id,
        direction=pb.Direction.Value(f"DIRECTION_{call.direction}"),
        status=pb.CallStatus.Value(f"CALL_STATUS_{call.status}"),
        hangup_cause=pb.HangupCause.Value(f"HANGUP_CAUSE_{call.hangup_cause or 'UNSPECIFIED'}"),
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
    if call.answer_time is not None and call.end_time is not None:
        message.duration.CopyFrom(_duration(call))
    return message


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)  # SQLite hands back naive UTC


def _duration(call: Call) -> Duration:
    assert call.answer_time is not None and call.end_time is not None
    duration = Duration()
    duration.FromTimedelta(max(_utc(call.end_time) - _utc(call.answer_time), timedelta(0)))
    return duration


def _handler(message: object) -> tuple[str | None, str | None]:
    """(app_ref, webhook) of a request's `handler` oneof."""
    which = message.WhichOneof("handler")  # type: ignore[attr-defined]
    return (
        message.app_ref if which == "app_ref" else None,  # type: ignore[attr-defined]
        message.webhook if which == "webhook" else None,  # type: ignore[attr-defined]
    )


class CallsServicer(HistoryRpcs, calls_pb2_grpc.CallsServicer):
    """The Calls service: the network behind a CallGateway; numbers and agents checked with their services."""

    service_name = pb.DESCRIPTOR.services_by_name["Calls"].full_name

    def __init__(self, db: Database, tokens: PageTokens, gateway: CallGateway | None = None):
        self.db = db
        self.tokens = tokens
        ring_delay, answer_delay = config.simulated_call_delays()
        self.gateway = gateway or SimulatedGateway(self.on_network_event, ring_delay=ring_delay,
                                                   answer_delay=answer_delay)
        self.events = EventRecorder(db)
        self.own_endpoint: str | None = None
        self._services: Services | None = None
        # This process is a runner: its calls are its own, and those of runners that stopped beating (a
        # crash, including a previous run of this one) can no longer be controlled, so they are ended.
        self.runner = new_ref()
        self.heartbeat = config.calls_heartbeat()
        self.stale_after = timedelta(seconds=self.heartbeat * 6)
        self._beating: asyncio.Task[None] | None = None
        ended = db.transaction(lambda s: live.start_runner(s, self.runner, self.stale_after), write=True)
        if ended:
            log.warning("ended %d call(s) of a Calls process that stopped (SERVICE_RESTART)", ended)

    def started(self, endpoint: str) -> None:
        """Told by the server where it serves: Numbers and Agents are asked there unless configured elsewhere."""
        self.own_endpoint = endpoint
        self._beating = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        """Every heartbeat: stamps this runner's, and ends the calls of runners that stopped."""
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                ended = await self.db.run_transaction(
                    lambda s: live.beat(s, self.runner, self.stale_after), write=True
                )
            except Exception:  # noqa: BLE001 - the database may be away for now: the next beat tries again
                log.exception("the heartbeat of Calls process %s failed", self.runner)
                continue
            if ended:
                log.warning("ended %d call(s) of a Calls process that stopped (SERVICE_RESTART)", ended)

    async def close(self) -> None:
        """Stops the network and the heartbeat, and ends the calls this process carried: nothing can
        control them once it is gone."""
        if self._beating is not None:
            self._beating.cancel()
            await asyncio.gather(self._beating, return_exceptions=True)
        await self.gateway.close()
        await self.events.close()
        if self._services is not None:
            await self._services.close()
        ended = await self.db.run_transaction(lambda s: live.stop_runner(s, self.runner), write=True)
        if ended:
            log.warning("ended %d running call(s) on stopping (SERVICE_RESTART)", ended)

    def _directory(self, caller: Caller, incoming: Incoming) -> live.Directory:
        if self._services is None:
            numbers = config.service_endpoint("numbers") or self.own_endpoint
            agents = config.service_endpoint("agents") or self.own_endpoint
            if not (numbers and agents):
                raise Unavailable("The Calls service does not know where Numbers and Agents are; retry shortly.")
            self._services = Services(numbers, agents)
        return self._services.directory(incoming.api_key, caller.key_id, incoming.time_remaining)


    async def on_network_event(self, event: GatewayEvent) -> None:
        """What the gateway reports; an event the call's status does not allow is logged and dropped."""
        if event.event is None:
            log.info("DTMF %r received on call %s", event.dtmf, event.ref)
            return
        try:
            await self.events.record(event)
        except states.TransitionRefused as refused:
            log.info("network event %s on call %s ignored: %s", event.event.value, event.ref, refused)

    @rpc(Access.WRITE)
    async def CreateCall(self, request: pb.CreateCallRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        app_ref, webhook = _handler(request)
        new = live.checked_new_call(
            from_party=getattr(request, "from"), to=request.to, caller_id=request.caller_id,
            device_id=request.device_id, app_ref=app_ref, webhook=webhook, timeout=request.timeout,
            metadata=request.metadata, request_id=request.request_id,
        )
        if new.request_id and await self._made_before(caller, new.request_id):
            return await self._earlier_call(caller, new.request_id)
        caller_id = await live.caller_id_of(new, self._directory(caller, incoming))
        try:
            call = await self.db.run_transaction(
                lambda s: live.insert_call(s, caller, new, caller_id, self.runner), write=True
            )
        except IntegrityError:  # the request_id's unique key: a concurrent try of the same create won
            return await self._earlier_call(caller, new.request_id)
        await self.gateway.originate(call.ref, call.from_party, call.to_party, call.caller_id, call.timeout_seconds)
        return call_proto(call)

    async def _made_before(self, caller: Caller, request_id: str) -> bool:
        found = await self.db.lookup(live.CALL_BY_REQUEST_ID, workspace_id=caller.workspace_id, request_id=request_id)
        return found is not None

    async def _earlier_call(self, caller: Caller, request_id: str | None) -> pb.Call:
        earlier = await self.db.run_transaction(lambda s: live.earlier_call(s, caller, request_id), write=False)
        if earlier is None:
            raise InvalidArgument.of("request_id", "is already used")
        return call_proto(earlier)

    @rpc(Access.READ)
    def GetCall(self, request: pb.GetCallRequest, caller: Caller, session: Session) -> pb.Call:
        return call_proto(live.get_call(session, caller, request.ref))

    @rpc(Access.READ)
    def ListActiveCalls(
        self, request: pb.ListActiveCallsRequest, caller: Caller, session: Session
    ) -> pb.ListActiveCallsResponse:
        return pb.ListActiveCallsResponse(calls=[call_proto(c) for c in live.list_active(session, caller)])

    async def _control(
        self, caller: Caller, ref: str, control: Control, order: Callable[[str], Awaitable[None]], change: live.Change
    ) -> pb.Call:
        """Checks the call allows `control`, gives the network its order, then stores the change."""
        call = await self.db.run_transaction(lambda s: live.controllable(s, caller, ref, control), write=False)
        await order(call.ref)
        return call_proto(await self.db.run_transaction(
            lambda s: live.controlled(s, caller, ref, control, change), write=True
        ))

    @rpc(Access.WRITE)
    async def HangupCall(self, request: pb.HangupCallRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        return await self._control(caller, request.ref, Control.HANGUP, self.gateway.hangup,
                                   live.ending(states.NORMAL_CLEARING))

    @rpc(Access.WRITE)
    async def CancelCall(self, request: pb.CancelCallRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        return await self._control(caller, request.ref, Control.CANCEL, self.gateway.cancel,
                                   live.ending(states.CANCEL))

    @rpc(Access.WRITE)
    async def MuteCall(self, request: pb.MuteCallRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        return await self._control(caller, request.ref, Control.MUTE,
                                   lambda ref: self.gateway.mute(ref, request.mute), live.muting(request.mute))

    @rpc(Access.WRITE)
    async def HoldCall(self, request: pb.HoldCallRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        return await self._control(caller, request.ref, Control.HOLD,
                                   lambda ref: self.gateway.hold(ref, request.hold), live.holding(request.hold))

    @rpc(Access.WRITE)
    async def RecordCall(self, request: pb.RecordCallRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        return await self._control(caller, request.ref, Control.RECORD,
                                   lambda ref: self.gateway.record(ref, request.start), live.recording(request.start))

    @rpc(Access.WRITE)
    async def PlayAudio(self, request: pb.PlayAudioRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        url = live.checked_url(request.url)
        return await self._control(caller, request.ref, Control.PLAY, lambda ref: self.gateway.play(ref, url),
                                   live.unchanged)

    @rpc(Access.WRITE)
    async def TransferCall(self, request: pb.TransferCallRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        to = live.checked_transfer_target(request.to)
        return await self._control(caller, request.ref, Control.TRANSFER,
                                   lambda ref: self.gateway.transfer(ref, to, request.attended),
                                   live.transferring(to, request.attended))

    @rpc(Access.WRITE)
    async def SendDtmf(self, request: pb.SendDtmfRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        digits = live.checked_digits(request.digits)
        return await self._control(caller, request.ref, Control.DTMF,
                                   lambda ref: self.gateway.send_dtmf(ref, digits), live.unchanged)

    @rpc(Access.WRITE)
    async def RedirectCall(self, request: pb.RedirectCallRequest, caller: Caller, incoming: Incoming) -> pb.Call:
        app_ref, webhook = live.checked_redirect(*_handler(request))
        return await self._control(caller, request.ref, Control.REDIRECT,
                                   lambda ref: self.gateway.redirect(ref, app_ref, webhook),
                                   live.redirecting(app_ref, webhook))
