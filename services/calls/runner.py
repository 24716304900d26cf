"""This Calls process at work: the network it carries calls on, and everything that runs beside the RPCs.

A `Runner` owns the CallGateway, the EventRecorder that stores what the network reports, the
heartbeat that keeps this process's calls its own (heartbeats.py), the Numbers and Agents clients
that check a new call's parties and route inbound calls, and the steering of calls by their
webhooks' replies (steering.py). The servicer is given one and turns protos into its calls.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..core import config, ratelimits, workspaces
from ..core.auth import Caller
from ..core.errors import FailedPrecondition, InvalidArgument, Unavailable
from ..core.rpc import Incoming
from ..events import watching
from ..events.feed import EventFeed
from ..persistence.base import new_ref, utcnow
from ..persistence.db import Database
from . import events, guards, heartbeats, inbound, live, liveness, recordings, states, steering
from .caller_id import caller_id_of
from .directory import Services
from .gateway import CallGateway, Device, Dial, InboundCall, Origination, Recording, Report, SimulatedGateway
from .models import Call
from .parties import Directory
from .recorder import EventRecorder
from .sip import SipGateway
from .steering import Post, Steering

log = logging.getLogger("voxplane.calls")

# An order to the network about one call: `lambda network, ref: network.mute(ref, True)`.
Order = Callable[[CallGateway, str], Awaitable[None]]
# The workspace of the service key a Calls process makes for itself when VOXPLANE_CALLS_SERVICE_KEY is unset.
SERVICE_WORKSPACE = "voxplane-calls"


def build_gateway(report: Report, db: Database) -> CallGateway:
    """The gateway `VOXPLANE_CALL_GATEWAY` names (the setting admits only those built here)."""
    settings = config.settings()
    if settings.call_gateway == "simulated":
        return SimulatedGateway(report, ring_delay=settings.sim_ring_delay, answer_delay=settings.sim_answer_delay)
    if settings.call_gateway == "sip":
        return SipGateway(report, db)
    raise ValueError(f"VOXPLANE_CALL_GATEWAY: no gateway is named {settings.call_gateway!r}")


class Runner:
    """One Calls process: its runner id, gateway, event recorder, heartbeat and directory clients."""

    def __init__(self, db: Database, post: Post | None = None):
        self.db = db
        self.id = new_ref()
        self.gateway = build_gateway(self._on_report, db)
        self.feed = EventFeed(db, events.TOPIC)  # what this process's WatchCallEvents streams read
        self.events = EventRecorder(db, stored=self.feed.wake)
        self.steering = Steering(
            db, self.gateway, self.events.record, post or functools.partial(steering.post_now, db=db)
        )
        self._service_key: str | None = None
        self._made_service_key = False
        self._key_lock = asyncio.Lock()
        self.heartbeat = config.settings().calls_heartbeat
        self.stale_after = timedelta(seconds=self.heartbeat * 6)
        self._endpoint: str | None = None
        self._services: Services | None = None
        self._beating: asyncio.Task[None] | None = None
        self._pruning: asyncio.Task[None] | None = None
        self.lock = liveness.RunnerLock(db, self.id)

    async def start(self, endpoint: str) -> None:
        """Records this runner and ends the calls of runners that stopped (a crash, including a previous run
        of this one), then beats. Numbers and Agents are asked at `endpoint` unless configured elsewhere."""
        if isinstance(self.gateway, SimulatedGateway):
            log.warning(
                "Calls runs on the SIMULATED network: no call reaches a phone, and inbound calls are only those "
                "injected with SimulateInboundCall (see README, 'Calls')"
            )
        self._endpoint = endpoint
        await self.db.run(self.lock.acquire)

        def start(session: Session) -> int:
            dead = liveness.dead_runners(session, self.db, self.id)
            return heartbeats.start_runner(session, self.id, self.stale_after, dead)

        ended = await self.db.run_transaction(start, write=True)
        _log_ended(ended, "call(s) of a Calls process that stopped")
        self.feed.wake()
        await self.gateway.start()
        self._beating = asyncio.get_running_loop().create_task(self._beat())
        self._pruning = asyncio.get_running_loop().create_task(watching.keep_pruning(self.db))

    async def _beat(self) -> None:
        """Every heartbeat: stamps this runner's, and ends the calls of runners that stopped."""
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.db.run(self.lock.keep)  # before the beat: a runner that beat holds its lock
                ended = await self.db.run_transaction(
                    lambda s: heartbeats.beat(s, self.id, self.stale_after), write=True
                )
            except Exception:  # noqa: BLE001 - the database may be away for now: the next beat tries again
                log.exception("the heartbeat of Calls process %s failed", self.id)
                continue
            _log_ended(ended, "call(s) of a Calls process that stopped")
            if ended:
                self.feed.wake()

    async def close(self) -> None:
        """Stops the network and the heartbeat, and ends the calls this process carried: nothing can
        control them once it is gone."""
        for task in (self._beating, self._pruning):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.steering.close()
        await self.gateway.close()
        await self.events.close()
        await self.feed.close()
        if self._services is not None:
            await self._services.close()
        try:
            ended = await self.db.run_transaction(lambda s: heartbeats.stop_runner(s, self.id), write=True)
            _log_ended(ended, "running call(s) on stopping")
            if self._made_service_key and self._service_key:
                key_id = self._service_key.split("_")[1]  # vxp_<key id>_<secret>
                await self.db.run_transaction(lambda s: workspaces.revoke_key(s, key_id), write=True)
        finally:
            await self.db.run(self.lock.release)

    async def _on_report(self, report: states.NetworkEvent | InboundCall | Recording) -> inbound.Routed | None:
        if isinstance(report, InboundCall):
            return await self._route(report)
        if isinstance(report, Recording):
            if not await self.db.run_transaction(lambda s: recordings.store(s, report), write=True):
                log.info("the recording of call %s was not stored: the call is gone", report.ref)
            return None
        await self._on_network_event(report)
        return None

    async def _on_network_event(self, event: states.NetworkEvent) -> None:
        """What the gateway reports; an event the call's status does not allow is logged and dropped."""
        try:
            await self.events.record(event)
        except states.TransitionRefused as refused:
            what = event.event.value if event.event else f"DTMF {event.dtmf!r}"
            log.info("network event %s on call %s ignored: %s", what, event.ref, refused)
            return
        if event.event is None:
            self.steering.data(event.ref)
        elif event.event is states.Event.END:
            self.steering.forget(event.ref)

    async def _route(self, call: InboundCall) -> inbound.Routed:
        """Asks Numbers where the call goes, stores it in the number's workspace, then hands the call to the
        webhook that steers it, if any, else rings the number's SIP target. A number no workspace has is
        rejected (NOT_FOUND) and nothing is stored; a suspended one's call is stored, rejected the same way."""
        ingress = await self._numbers_and_agents().ingress(await self._routing_key(), call.destination)
        if ingress is None:
            placed = await self._place_phone_call(call)
            if placed is not None:
                return placed
            await self.gateway.reject(call.ref, states.NOT_FOUND)
            return inbound.Routed(None, states.NOT_FOUND)
        stored, steered_by = await self.db.run_transaction(
            lambda s: inbound.insert_inbound_call(s, call, ingress, self.id), write=True
        )
        if ingress.suspended:  # refused, and kept in the workspace's history
            await self.gateway.reject(call.ref, states.NOT_FOUND)
            return inbound.Routed(await self.db.run_transaction(lambda s: inbound.call_by_ref(s, call.ref), write=False))
        if steered_by:
            self.steering.new_call(stored, steered_by, ingress.sip_target)
        elif ingress.sip_target:
            await self.gateway.dial(stored.ref, Dial((ingress.sip_target,), stored.caller_id, stored.timeout_seconds))
        return inbound.Routed(stored)

    async def _place_phone_call(self, call: InboundCall) -> inbound.Routed | None:
        """A call an agent's phone placed to a number no workspace has (the edge sends the gateway only those
        of agents it authenticated): stored in the agent's workspace as an outbound call from the agent, under
        the workspace's toll-fraud guards (their refusal raises, for the network to tell the phone), and
        dialed (through the trunk). None when the caller is no enabled agent."""
        address = inbound.agent_address(call.source)
        found = address and await self._numbers_and_agents().agent_at(await self._routing_key(), *address)
        if not found or not found[0].enabled:
            return None
        agent, workspace_ref = found
        stored = await self.db.run_transaction(
            lambda s: inbound.insert_phone_call(s, call, agent, workspace_ref, self.id), write=True
        )
        self.feed.wake()
        await self.gateway.dial(
            stored.ref, Dial((stored.to_party,), stored.caller_id, stored.timeout_seconds, from_device=True)
        )
        return inbound.Routed(stored)

    async def simulate_inbound(self, call: inbound.SimulatedCall) -> inbound.Routed:
        """Has the simulated network report an inbound call; refused on any other network."""
        if not isinstance(self.gateway, SimulatedGateway):
            raise FailedPrecondition(
                f"This server's network is {config.settings().call_gateway!r}, not the simulated one: "
                "inbound calls come from the network."
            )
        routed: inbound.Routed = await self.gateway.inject(call.source, call.destination, call.digits)
        return routed

    async def _routing_key(self) -> str:
        """The `service` key Calls asks Numbers with where inbound calls go: VOXPLANE_CALLS_SERVICE_KEY, else
        one this process makes for itself (and revokes when it stops)."""
        async with self._key_lock:
            if self._service_key is None:
                configured = config.settings().calls_service_key
                self._made_service_key = not configured
                self._service_key = configured or await self.db.run_transaction(
                    lambda s: workspaces.new_service_key(s, SERVICE_WORKSPACE), write=True
                )
            return self._service_key

    def _numbers_and_agents(self) -> Services:
        if self._services is None:
            numbers = config.settings().numbers_endpoint or self._endpoint
            agents = config.settings().agents_endpoint or self._endpoint
            if not (numbers and agents):
                raise Unavailable("The Calls service does not know where Numbers and Agents are; retry shortly.")
            self._services = Services(numbers, agents)
        return self._services

    def _directory(self, caller: Caller, incoming: Incoming) -> Directory:
        return self._numbers_and_agents().directory(incoming.api_key, caller.workspace_ref, incoming.time_remaining)

    async def create(self, caller: Caller, incoming: Incoming, new: live.NewCall) -> Call:
        """Places `new`: checks its parties, then, as it stores it QUEUED, the workspace's toll-fraud guards
        (guards.py), and gives the network the order. A retry of an earlier create (its request_id) returns
        the call that one made."""
        if new.request_id and await self.db.lookup(
            live.CALL_BY_REQUEST_ID, workspace_id=caller.workspace_id, request_id=new.request_id
        ):
            return await self._earlier_call(caller, new.request_id)
        destination = guards.destination_of(new.destination)
        caller_id, rings_first = await caller_id_of(new, self._directory(caller, incoming))

        def place(session: Session) -> tuple[Call, guards.Guards]:
            checked = guards.check_new_call(session, caller.workspace_id, destination)
            call = live.insert_call(session, caller, new, caller_id, self.id)
            # Counted last, so that the workspace's counter row is locked only until the commit.
            ratelimits.take_one_created(session, ratelimits.CALLS, caller.workspace_id)
            return call, checked

        try:
            call, checked = await self.db.run_transaction(place, write=True)
        except IntegrityError:  # the request_id's unique key: a concurrent try of the same create won
            return await self._earlier_call(caller, new.request_id)
        self.feed.wake()
        device = None
        if rings_first is not None:
            device = Device(rings_first.ref, tuple(rings_first.addresses), next(iter(rings_first.domains), ""))
        await self.gateway.originate(Origination(
            call.ref, call.from_party, call.to_party, call.caller_id, device, call.webhook, call.timeout_seconds,
            checked,
        ))
        return call

    async def _earlier_call(self, caller: Caller, request_id: str | None) -> Call:
        earlier = await self.db.run_transaction(lambda s: live.earlier_call(s, caller, request_id), write=False)
        if earlier is None:
            raise InvalidArgument.of("request_id", "is already used")
        return earlier

    async def control(
        self, caller: Caller, ref: str, control: states.Control, order: Order, change: live.Change,
        dials: str | None = None,
    ) -> Call:
        """Checks the call allows `control` and that the workspace's toll-fraud guards let it dial the party
        `dials` (if any), gives the network its order, then stores the change and its events, stamped with
        the time of the request."""
        at = utcnow()
        destination = guards.destination_of(dials) if dials else None

        def check(session: Session) -> Call:
            call = live.controllable(session, caller, ref, control)
            if destination is not None:
                guards.check_destination(guards.guards_of(session, caller.workspace_id), destination)
            return call

        call = await self.db.run_transaction(check, write=False)
        await order(self.gateway, call.ref)
        changed = await self.db.run_transaction(
            lambda s: live.controlled(s, caller, ref, control, change, at), write=True
        )
        self.feed.wake()
        return changed


def _log_ended(ended: int, which: str) -> None:
    if ended:
        log.warning("ended %d %s (SERVICE_RESTART)", ended, which)
