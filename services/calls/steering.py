"""Replies steer the call: NEW_CALL of an inbound call routed to a webhook (the number's, or the
workspace's default inbound URL), and DATA (DTMF) of any call with a webhook, are POSTed to it at once,
and its reply (replies.py) is carried out through the gateway.

A steering POST waits at most `VOXPLANE_STEERING_TIMEOUT` seconds (5) and is not retried while the call
waits. When it times out, fails or gets a reply that is no instruction this service reads, the call
takes its number's fallback: the number's SIP target (`aor_link` / `forward_sip_to`) when it has one,
else it ends (rejected, cause CONGESTION, before the answer; hung up after). A reply that comes later
is ignored, and so is one that comes when the call has ended. What came of the POST (the instruction, or
why there was none) is stored by the Webhooks service (`webhooks.steerings`) and shown on the event's
delivery; the event itself is still delivered for the record by the Webhooks service's retrying path.

A dial the workspace's toll-fraud guards refuse (a target in a country or of a costly type its call
settings do not allow: guards.py) is not dialled: the call ends as a hangup reply would end it, and a
WARNING says why.

Outbound calls are not steered by NEW_CALL: their application placed them with CreateCall and said
there what it wants; DTMF on them is steered like any other.

Steering runs in the Runner's tasks, never in an RPC's request path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core import config
from ..core.errors import PermissionDenied
from ..events.models import Event
from ..persistence.base import utcnow
from ..persistence.db import Database
from ..webhooks import posting, steerings
from ..webhooks.posting import Reply
from . import guards, live, replies, states
from .gateway import CallGateway, Dial, Gather
from .models import Call, CallParticipant
from .states import NetworkEvent

log = logging.getLogger("voxplane.calls.steering")

VOICEMAIL = "voicemail"  # the party a call sent to voicemail gains


# POSTs one stored event to a URL, signed, as the workspace's endpoint wants it, within a timeout.
Post = Callable[[int, str, Event, float], Awaitable[Reply]]


async def post_now(workspace_id: int, url: str, event: Event, timeout: float, *, db: Database) -> Reply:
    return await posting.post_now(db, workspace_id, url, event, timeout=timeout)


@dataclass(frozen=True)
class Steered:
    """A call whose webhook steers it."""

    ref: str
    workspace_id: int
    webhook: str
    sip_target: str | None  # an inbound call's number's SIP target: the fallback


class Steering:
    """The calls of one Runner whose webhooks steer them, and the POSTs under way for them."""

    def __init__(self, db: Database, gateway: CallGateway, record: Callable[[NetworkEvent], Awaitable[None]],
                 post: Post):
        self.db = db
        self.gateway = gateway
        self.record = record
        self.post = post
        self._inbound: dict[str, Steered] = {}  # the inbound calls routed here to a webhook, by ref
        self._tasks: set[asyncio.Task[None]] = set()

    def new_call(self, call: Call, webhook: str, sip_target: str | None) -> None:
        """Asks `webhook` what to do with inbound call `call`, in a task of its own."""
        steered = Steered(call.ref, call.workspace_id, webhook, sip_target)
        self._inbound[call.ref] = steered
        self._spawn(self._steer(steered, "NEW_CALL"))

    def data(self, ref: str) -> None:
        """Asks the webhook of call `ref` (if it has one) what to do after the DTMF it just reported."""
        self._spawn(self._data(ref))

    def forget(self, ref: str) -> None:
        """Call `ref` has ended."""
        self._inbound.pop(ref, None)

    async def _data(self, ref: str) -> None:
        """The call's own webhook (which RedirectCall may have changed), else the one that steered it in."""
        found = await self.db.run_transaction(lambda s: _webhook_of(s, ref), write=False)
        if found is None:
            return
        workspace_id, webhook = found
        routed = self._inbound.get(ref)
        url = webhook or (routed.webhook if routed else None)
        if url:
            await self._steer(Steered(ref, workspace_id, url, routed.sip_target if routed else None), "DATA")

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:  # noqa: BLE001 - one call's steering must not stop the others'
                log.exception("steering a call failed")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _steer(self, call: Steered, event_type: str) -> None:
        event = await self.db.run_transaction(lambda s: _latest_event(s, call.ref, event_type), write=False)
        if event is None:
            log.warning("call %s has no %s event to steer with; it takes its fallback", call.ref, event_type)
            await self.apply(call, None, failed=True)
            return
        timeout = config.settings().steering_timeout
        asked = utcnow()
        instruction: replies.Instruction | None = None
        try:
            reply = await asyncio.wait_for(self.post(call.workspace_id, call.webhook, event, timeout), timeout)
        except TimeoutError:
            reply = Reply(error=f"no reply within {timeout:g} s", timed_out=True)
        if reply.timed_out:
            outcome = _outcome(steerings.TIMEOUT, asked, reply, f"no reply within {timeout:g} s")
        elif reply.error:
            outcome = _outcome(steerings.ERROR, asked, reply, reply.error)
        elif not reply.ok:
            outcome = _outcome(steerings.ERROR, asked, reply, f"the webhook answered HTTP {reply.status_code}")
        else:
            try:
                instruction = replies.parse(reply.body, reply.content_type)
            except replies.InvalidReply as invalid:
                outcome = _outcome(steerings.INVALID_REPLY, asked, reply, str(invalid))
            else:
                outcome = (_outcome(steerings.APPLIED, asked, reply, instruction=replies.as_json(instruction))
                           if instruction else _outcome(steerings.NO_INSTRUCTION, asked, reply))
        await self._keep(event, call.webhook, outcome)
        if outcome.error:
            log.warning("steering %s of call %s by %s failed: %s; the call takes its fallback",
                        event.type, call.ref, call.webhook, outcome.error)
            await self.apply(call, None, failed=True)
            return
        log.info("steering %s of call %s by %s: %s", event.type, call.ref, call.webhook, instruction or "no instruction")
        await self.apply(call, instruction, failed=False)

    async def _keep(self, event: Event, url: str, outcome: steerings.Outcome) -> None:
        """Stores the outcome for ListWebhookDeliveries; the call is steered even if that fails."""
        try:
            await steerings.record(self.db, event.id, url, outcome)
        except Exception:  # noqa: BLE001 - the record is for the log; the call must not wait on it
            log.exception("the outcome of steering %s of call %s was not stored", event.type, event.resource_ref)

    async def apply(self, call: Steered, instruction: replies.Instruction | None, *, failed: bool) -> None:
        """Carries out `instruction` (None: none came, `failed` says whether it should have) on the call as
        it now is (answered or not); a call that has ended meanwhile is left alone."""
        status = await self.db.run_transaction(lambda s: _status_of(s, call.ref), write=False)
        if status is None or status in states.FINAL:
            log.info("steering of call %s ignored: the call has ended", call.ref)
            return
        answered = status == states.IN_PROGRESS
        ref, network = call.ref, self.gateway
        if instruction is None:
            if not failed and answered:
                return  # e.g. a DATA event only acknowledged: the call goes on as it is
            if call.sip_target:
                instruction = replies.Dial((call.sip_target,))
            elif not answered:
                await network.reject(ref, states.CONGESTION)  # nobody said what to do with it
                return
            else:
                instruction = replies.Hangup()
        if isinstance(instruction, replies.Dial) and (refused := await self._refusal(call, instruction.targets)):
            log.warning("steering of call %s by %s: %s The call is ended instead.", ref, call.webhook, refused)
            instruction = replies.Hangup()
        match instruction:
            case replies.Dial(targets=targets, anonymous=anonymous, caller_id=caller_id):
                dialled = await self._change(ref, _dialling(targets, anonymous, caller_id))
                await network.dial(ref, Dial(targets, dialled.caller_id, live.DEFAULT_TIMEOUT))
            case replies.Voicemail():
                await self._change(ref, _dialling((VOICEMAIL,), False, ""))
                await network.voicemail(ref)
            case replies.Reject(cause=cause) if not answered:
                await network.reject(ref, cause)
            case replies.Play(url=url):
                if not answered:
                    await network.answer(ref)
                await network.play(ref, url)
                await self._change(ref, live.playing(url))
            case Gather():
                if not answered:
                    await network.answer(ref)
                await network.gather(ref, instruction)
            case replies.Hangup() | replies.Reject() if answered:
                await network.hangup(ref)
                await self.record(NetworkEvent(ref, states.Event.END, states.NORMAL_CLEARING))
            case replies.Hangup():
                await network.reject(ref, replies.REJECT_CAUSES["rejected"])
            case _:
                raise AssertionError(f"unhandled instruction {instruction!r}")

    async def _refusal(self, call: Steered, targets: tuple[str, ...]) -> str | None:
        """Why the workspace's toll-fraud guards refuse to dial one of `targets`; None when they allow all."""
        destinations = [found for target in targets if (found := guards.destination_of(target))]
        if not destinations:
            return None

        def check(session: Session) -> None:
            allowed = guards.guards_of(session, call.workspace_id)
            for destination in destinations:
                guards.check_destination(allowed, destination, "target")

        try:
            await self.db.run_transaction(check, write=False)
        except PermissionDenied as refused:
            return str(refused)
        return None

    async def _change(self, ref: str, change: live.Change) -> Call:
        """Stores what an instruction changed of call `ref`, with its events."""
        return await self.db.run_transaction(lambda s: _changed(s, ref, change), write=True)

    async def close(self) -> None:
        """Stops the POSTs under way: the calls they were for end with this process."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _outcome(result: str, asked: datetime, reply: Reply, error: str = "", instruction: str = "") -> steerings.Outcome:
    return steerings.Outcome(result, asked, utcnow(), instruction, error, reply.status_code)


def _latest_event(session: Session, ref: str, event_type: str) -> Event | None:
    return session.scalar(
        select(Event).where(Event.topic == "call", Event.resource_ref == ref, Event.type == event_type)
        .order_by(Event.sequence.desc()).limit(1)
    )


def _webhook_of(session: Session, ref: str) -> tuple[int, str | None] | None:
    row = session.execute(select(Call.workspace_id, Call.webhook).where(Call.ref == ref)).one_or_none()
    return (row[0], row[1]) if row is not None else None


def _status_of(session: Session, ref: str) -> str | None:
    return session.scalar(select(Call.status).where(Call.ref == ref))


def _changed(session: Session, ref: str, change: live.Change) -> Call:
    call = session.scalar(select(Call).where(Call.ref == ref).with_for_update())
    assert call is not None
    live.change_call(session, call, change, utcnow())
    return call


def _dialling(targets: tuple[str, ...], anonymous: bool, caller_id: str) -> live.Change:
    """Adds the targets as parties of the call, and sets the caller ID they are shown."""

    def change(call: Call, _: live.Emit) -> None:
        if anonymous:
            call.caller_id = ""
        elif caller_id:
            call.caller_id = caller_id
        call.participants.extend(CallParticipant(number=target) for target in targets)

    return change
