"""The real network: click-to-call and inbound calls over SIP with sippy, media anchored at rtpengine.

`SipGateway` places a call the sipgate way: it rings the caller's device (leg A); when A answers it
calls the destination (leg B) and bridges the two through rtpengine, which relays (and can silence,
or inject DTMF into) the media. Both legs are our own UAC dialogs (a B2BUA).

An INVITE from the edge (Kamailio) is an inbound call: its dialog is leg B (the far party, our UAS) and
is reported to Calls, which routes it; `dial` then rings the targets (leg A: the first to answer, a UAC
dialog through the edge) and bridges them the same way, so the controls act alike on both kinds.

sippy runs in a thread of its own: its event dispatcher `ED2` is a process-wide singleton bound to the
thread that imports it. asyncio enters that thread with `ED2.callFromThread`, and sippy's callbacks
come back with `loop.call_soon_threadsafe`. So there is one SIP stack per process (`_SipThread`).
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import math
import re
import threading
import wave
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ..core import config
from ..core.errors import FailedPrecondition, PermissionDenied, ResourceExhausted, Unavailable, Unimplemented
from ..persistence.base import new_ref
from ..persistence.db import Database
from ..webhooks import posting
from . import announcements, audio, guards, sip_dialogs, states
from .gateway import CallGateway, Dial, Gather, InboundCall, Origination, Recording, Report
from .rtpengine import NgClient, NgError
from .states import NetworkEvent

log = logging.getLogger("voxplane.calls.sip")
T = TypeVar("T")

# What rtpengine offers leg A before B has an address: port 9 (discard) until B answers.
PLACEHOLDER_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 9 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
)
# inject-DTMF: without it `play DTMF` answers ok and sends nothing.
NG_FLAGS: dict[str, Any] = {"flags": ["inject-DTMF"], "replace": ["origin", "session-connection"], "ICE": "remove"}
A_TAG, B_TAG = "leg-a", "leg-b"  # the rtpengine tags (from-tag / to-tag) of the two legs
DTMF_MS = 100  # each digit's tone
RINGBACK_ON, RINGBACK_OFF = 2, 4  # seconds of the North American ringback's cadence (440 + 480 Hz)
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
MAX_REDIRECTS = 3  # the 3xx a call's far leg may follow before it fails (a loop of redirects ends there)
# The final response an inbound call that ends unanswered with this hangup cause gets (else 503).
REFUSALS = {
    "BUSY": (486, "Busy Here"), states.NOT_FOUND: (404, "Not Found"), "NO_ANSWER": (480, "Temporarily Unavailable"),
    states.CANCEL: (487, "Request Terminated"),
}


@functools.cache
def ringback_wav() -> bytes:
    """One cadence of ringback as a WAV (8 kHz, 8-bit: small enough for one NG datagram, with rtpengine
    transcoding it to the call's codec)."""
    rate = 8000
    samples = bytearray(128 for _ in range(rate * (RINGBACK_ON + RINGBACK_OFF)))  # 8-bit WAV: 128 is silence
    for n in range(rate * RINGBACK_ON):
        t = n / rate
        samples[n] = 128 + round(40 * (math.sin(2 * math.pi * 440 * t) + math.sin(2 * math.pi * 480 * t)))
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(rate)
        wav.writeframes(bytes(samples))
    return out.getvalue()


def cause_for(code: int) -> str:
    """The hangup cause of a SIP final response that ended a leg before it was answered."""
    if code in (486, 600):
        return "BUSY"
    if code in (404, 484, 604, 410):
        return states.NOT_FOUND
    if code in (408, 480):
        return "NO_ANSWER"
    return states.CONGESTION  # a 3xx too: one not followed leaves the party unreached (FORWARDED needs an answer)


def refusal(cause: str) -> tuple[int, str]:
    """The SIP final response of an inbound call refused (or ended before the answer) with `cause`."""
    return REFUSALS.get(cause, (503, "Service Unavailable"))


def host_port(address: str, default_port: int = 5060) -> tuple[str, int]:
    """`host[:port]`, or a SIP URI `sip:host[:port]` -> (host, port)."""
    if address.startswith(("sip:", "sips:")):
        return parse_uri(address)[1]
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
    return host, int(port) if port else default_port


def parse_uri(uri: str) -> tuple[str, tuple[str, int]]:
    """`sip:user@host[:port][;params]` -> (user, (host, port))."""
    match = re.fullmatch(r"sips?:(?:([^@;]+)@)?([^;?]+)(?:[;?].*)?", uri)
    if match is None:
        raise ValueError(f"not a SIP URI: {uri!r}")
    return match.group(1) or "", host_port(match.group(2))


def with_direction(sdp: str, direction: str) -> str:
    """The same SDP with one direction attribute and its o= version bumped (RFC 3264: a changed offer)."""
    body = re.sub(r"a=(sendrecv|recvonly|sendonly|inactive)\r\n", "", sdp)
    body = re.sub(r"^(o=\S+ \S+ )(\d+)", lambda m: m.group(1) + str(int(m.group(2)) + 1), body, count=1, flags=re.M)
    return body + f"a={direction}\r\n"


class _SipLog:
    """sippy's own logger installs a SIGUSR1 handler, which only the main thread may; sippy needs just write()."""

    def write(self, *parts: object, **details: object) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("sippy %s %s", details.get("call_id", ""), "".join(str(part) for part in parts))


class _SipThread:
    """The process's one sippy event loop, in a daemon thread; `run(fn)` calls fn there."""

    _started: _SipThread | None = None
    _lock = threading.Lock()

    @classmethod
    def get(cls) -> _SipThread:
        with cls._lock:
            if cls._started is None:
                cls._started = cls()
            return cls._started

    def __init__(self) -> None:
        ready = threading.Event()
        self._ed2: Any = None
        threading.Thread(target=self._loop, args=(ready,), name="sippy", daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("sippy's thread did not start")

    def _loop(self, ready: threading.Event) -> None:
        from sippy.Core.EventDispatcher import ED2  # binds ED2 to this thread
        from sippy.SipURL import SipURL

        # sippy 2.5.0 keeps `;transport=UDP` (upper case, as sipp and some phones send it) verbatim, and
        # every in-dialog request then fails "unsupported transport: UDP". Lower-case it as it is parsed.
        parse_params = SipURL.setParams

        def set_params(url: Any, params: Any) -> None:
            parse_params(url, params)
            if isinstance(url.transport, str):
                url.transport = url.transport.lower()

        SipURL.setParams = set_params
        self._ed2 = ED2
        ready.set()
        ED2.loop()

    def run(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Runs fn() on sippy's thread; its result (or exception) resolves the future on this loop."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def call() -> None:
            try:
                result = fn()
            except BaseException as error:  # noqa: BLE001 - handed to the awaiting side
                loop.call_soon_threadsafe(_settle, done, None, error)
            else:
                loop.call_soon_threadsafe(_settle, done, result, None)

        self._ed2.callFromThread(call)
        return done


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


@dataclass
class _LegEvent:
    leg: str  # "A" or "B"
    kind: str  # ring, answer, fail, redirect, hangup (the far end's BYE), gone (sippy's disconnect/dead)
    time: datetime
    code: int | None = None
    sdp: str | None = None
    contacts: tuple[str, ...] = ()  # a redirect's: the users (E.164 or not) of its Contact URIs, in order


class _Leg:
    """One UAC dialog; its sippy UA lives on sippy's thread, its events go to the call's queue."""

    def __init__(self, name: str, sip: _SipThread, global_config: dict[str, Any], queue: asyncio.Queue[_LegEvent],
                 loop: asyncio.AbstractEventLoop | None = None):
        self.name = name
        self.sip = sip
        self.global_config = global_config
        self.queue = queue
        self.loop = loop or asyncio.get_running_loop()
        self.ua: Any = None
        self.local_sdp = ""
        self.remote_sdp = ""  # an inbound leg's: the caller's offer
        self.uas = False  # an inbound call's dialog, which we answer (or refuse), rather than one we placed
        self.answered = False  # its INVITE was answered (a UAS leg: we sent the 200)
        self._updating: asyncio.Future[str] | None = None  # our re-INVITE in flight
        self.ended = False  # the dialog is over (either side ended it): nothing more to send

    def _emit(self, kind: str, code: int | None = None, sdp: str | None = None, contacts: tuple[str, ...] = ()) -> None:
        event = _LegEvent(self.name, kind, datetime.now(UTC), code, sdp, contacts)  # the network's time, as it happens
        if self._updating is not None and kind in ("answer", "fail"):  # the outcome of our re-INVITE
            updating, self._updating = self._updating, None
            self.loop.call_soon_threadsafe(_settle, updating, kind, None)
        elif kind in ("hangup", "gone") or (kind in ("fail", "redirect") and not self.answered):
            self.ended = True  # (a refused re-INVITE leaves the dialog up)
        if kind == "answer":
            self.answered = True
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    def _on_event(self, event: Any, ua: Any) -> None:
        name = type(event).__name__
        data = event.getData()
        if name in ("CCEventRing", "CCEventConnect"):
            code, _reason, body = data
            kind = "answer" if name == "CCEventConnect" else "ring"
            self._emit(kind, code, str(body) if body is not None else None)
        elif name == "CCEventFail":
            self._emit("fail", data[0])
        elif name == "CCEventRedirect":  # a 300, 301 or 302 with a Contact: (code, reason, body, addresses)
            self._emit("redirect", data[0], contacts=tuple(address.url.username or "" for address in data[3]))
        elif name == "CCEventDisconnect":
            self._emit("hangup")

    def take(self, request: Any, transaction: Any) -> Any:
        """Becomes the UAS of an INVITE that came in (on sippy's thread); what the transaction manager wants back."""
        from sippy.SipAddress import SipAddress
        from sippy.SipContact import SipContact
        from sippy.SipURL import SipURL
        from sippy.UA import UA

        gone = lambda *_: self._emit("gone")  # noqa: E731 - as for our own legs
        self.uas = True
        self.remote_sdp = str(request.getBody() or "")
        self.ua = UA(self.global_config, event_cb=self._on_event, disc_cbs=(gone,), dead_cbs=(gone,))
        # A bare URI: sippy's default Contact has the display name "Anonymous", which some phones (sipp
        # among them) take into the Request-URI of their ACK and BYE.
        here = SipURL(host=self.global_config["_sip_address"], port=self.global_config["_sip_port"])
        self.ua.lContact = SipContact(address=SipAddress(url=here))
        return self.ua.recvRequest(request, transaction)

    async def respond(self, code: int, reason: str, sdp: str | None = None, warning: str = "") -> None:
        """A UAS leg's response to its INVITE: ringing, the answer (with our SDP), or a refusal (with a
        Warning header saying why, if `warning`)."""
        if code >= 300:
            self.ended = True
        elif code >= 200:
            self.answered, self.local_sdp = True, sdp or ""

        def send() -> None:
            from sippy.CCEvents import CCEventConnect, CCEventFail, CCEventRing
            from sippy.MsgBody import MsgBody
            from sippy.SipHeader import SipHeader

            body = MsgBody(sdp) if sdp else None
            if code < 200:
                self.ua.recvEvent(CCEventRing((code, reason, body)))
            elif code < 300:
                self.ua.recvEvent(CCEventConnect((code, reason, body)))
            else:
                quoted = warning.replace("\\", "").replace('"', "'")
                refusal = CCEventFail((code, reason))
                if warning:
                    refusal.extra_headers = (SipHeader(name="warning", bodys=f'399 voxplane "{quoted}"'),)
                self.ua.recvEvent(refusal)

        await self.sip.run(send)

    async def invite(self, user: str, uri_host: tuple[str, int], via: tuple[str, int], caller: str, sdp: str) -> None:
        """INVITE sip:user@uri_host, sent to `via` (an outbound proxy, or uri_host itself)."""
        self.local_sdp = sdp

        def start() -> None:
            from sippy.CCEvents import CCEventTry
            from sippy.MsgBody import MsgBody
            from sippy.SipCallId import SipCallId
            from sippy.UA import UA

            gone = lambda *_: self._emit("gone")  # noqa: E731 - our own BYE/CANCEL reaches only these
            self.ua = UA(self.global_config, event_cb=self._on_event, nh_address=uri_host,
                         disc_cbs=(gone,), dead_cbs=(gone,))
            self.ua.outbound_proxy = via
            self.ua.recvEvent(CCEventTry((SipCallId(), caller or "anonymous", user, MsgBody(sdp), None, caller)))

        await self.sip.run(start)

    async def reinvite(self, sdp: str) -> None:
        """Sends a re-INVITE and waits (up to 5 s) for its outcome: sippy drops an update ordered while the
        previous one is in flight, so hold and resume in quick succession would otherwise lose the resume."""
        self.local_sdp = sdp
        self._updating = outcome = self.loop.create_future()

        def update() -> None:
            from sippy.CCEvents import CCEventUpdate
            from sippy.MsgBody import MsgBody

            self.ua.recvEvent(CCEventUpdate(MsgBody(sdp)))

        await self.sip.run(update)
        try:
            if await asyncio.wait_for(outcome, 5) == "fail":
                log.info("leg %s refused a re-INVITE", self.name)
        except TimeoutError:
            log.warning("leg %s did not answer a re-INVITE within 5 s", self.name)

    async def end(self, cause: str = states.CANCEL) -> None:
        """CANCEL before the answer, BYE after; nothing once the dialog is over. An inbound dialog not yet
        answered is refused instead, with the response for `cause`."""
        if self.ended:
            return
        if self.uas and not self.answered:
            await self.respond(*refusal(cause))
            return
        self.ended = True

        def disconnect() -> None:  # queued after the INVITE, if one was ordered: so it is cancelled too
            from sippy.CCEvents import CCEventDisconnect

            if self.ua is not None:
                self.ua.recvEvent(CCEventDisconnect())

        await self.sip.run(disconnect)


class _Ended(Exception):
    """A leg ended before the call was bridged, with this hangup cause."""

    def __init__(self, cause: str, time: datetime):
        super().__init__(cause)
        self.cause = cause
        self.time = time


class _Redirected(_Ended):
    """The last leg still ringing answered a 3xx with these Contact users; not followed, the call fails."""

    def __init__(self, time: datetime, contacts: tuple[str, ...]):
        super().__init__(states.CONGESTION, time)
        self.contacts = contacts


@dataclass
class _Call:
    ref: str
    inbound: bool = False  # it came in: leg B is the caller, leg A the target that answered
    queue: asyncio.Queue[_LegEvent] = field(default_factory=asyncio.Queue)
    a: _Leg | None = None
    b: _Leg | None = None
    forks: list[_Leg] = field(default_factory=list)  # an inbound call's targets, ringing at once
    routing: bool = False  # an inbound call Calls is storing and routing now
    ended_while_routing: tuple[str, datetime | None] | None = None  # its END, reported once it is stored
    rang: bool = False  # RING is reported once, for the first leg that rings
    bridged: bool = False
    task: asyncio.Task[None] | None = None
    held: bool = False
    kept: bool = False  # a dialog of it is stored (sip_dialogs.py): delete it when the call ends
    redirected: set[str] = field(default_factory=set)  # legs that a 3xx ended and another leg replaced
    device_is_b: bool = False  # an agent's phone placed it: the device is the caller (B), the far party A
    recording: bool = False  # rtpengine records it now
    announcing: asyncio.Task[None] | None = None  # lets the parties hear each other again once it is played
    channel_ports: list[set[int]] = field(default_factory=list)  # rtpengine's ports of A and B, once recorded


class SipGateway(CallGateway):
    """Click-to-call and inbound calls on a SIP network (`VOXPLANE_CALL_GATEWAY=sip`); see the module's
    docstring and README."""

    def __init__(self, report: Report, db: Database):
        super().__init__(report)
        settings = config.settings()
        self.db = db
        # `serve --workers`: each Calls worker listens on a SIP port of its own.
        self.address = (settings.sip_host, settings.sip_port + settings.worker_index)
        self.dialogs_key = "%s:%d" % self.address  # whose stored dialogs are this gateway's
        self.proxy = host_port(settings.sip_proxy) if settings.sip_proxy else None
        self.trunk = host_port(settings.sip_trunk) if settings.sip_trunk else None
        self.rtpengine = host_port(settings.rtpengine_ng, 2223)
        self.recordings = Path(settings.rtpengine_recordings) if settings.rtpengine_recordings else None
        self._calls: dict[str, _Call] = {}
        self._started = asyncio.Lock()
        self._sip: _SipThread | None = None
        self._global_config: dict[str, Any] = {}
        self._ng: NgClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._routing: set[asyncio.Task[None]] = set()  # inbound calls being reported to Calls

    async def start(self) -> None:
        """Listens for SIP (inbound calls) and connects to rtpengine (placing a call does it too), then ends
        the calls a killed run of this gateway left up on the network."""
        await self._start()
        await self._end_calls_left_up()

    async def _end_calls_left_up(self) -> None:
        """BYE on each leg whose dialog a previous run stored and never deleted (it was killed), and the
        media of those calls deleted at rtpengine. The calls themselves were ended in the database by then
        (FAILED, SERVICE_RESTART: the runner that carried them is gone, heartbeats.py)."""
        key = self.dialogs_key
        left = await self.db.run_transaction(lambda s: sip_dialogs.left_by(s, key), write=False)
        if not left:
            return
        sip, ng = await self._start()
        transactions = self._global_config["_sip_tm"]

        def answered(response: Any) -> None:  # sippy retransmits each BYE until it is answered (or 32 s)
            log.info("BYE for call %s: %s", response.getHFBody("call-id"), response.getSCode()[0])

        def send() -> None:
            for dialog in left:
                transactions.newTransaction(sip_dialogs.bye_for(dialog), resp_cb=answered)

        await sip.run(send)
        refs = {dialog.call_ref for dialog in left}
        for ref in refs:
            try:
                await ng.command("delete", call_id=ref)
            except NgError as error:
                log.info("rtpengine delete of call %s: %s", ref, error)

        def forget(session: Any) -> None:
            for ref in refs:
                sip_dialogs.forget(session, key, ref)

        await self.db.run_transaction(forget, write=True)
        log.warning("sent BYE on %d leg(s) of %d call(s) a previous run of the SIP gateway at %s left up",
                    len(left), len(refs), key)

    async def _start(self) -> tuple[_SipThread, NgClient]:
        """Listens for SIP and connects to rtpengine, once."""
        async with self._started:
            if self._sip is None or self._ng is None:
                self._loop = asyncio.get_running_loop()
                self._ng = await NgClient.connect(*self.rtpengine)
                sip = _SipThread.get()
                host, port = self.address

                def listen() -> dict[str, Any]:
                    from sippy.SipConf import SipConf
                    from sippy.SipTransactionManager import SipTransactionManager

                    SipConf.my_address, SipConf.my_port, SipConf.my_uaname = host, port, "voxplane"
                    global_config: dict[str, Any] = {"_sip_address": host, "_sip_port": port, "_sip_logger": _SipLog()}
                    global_config["_sip_tm"] = SipTransactionManager(global_config, self._on_request)
                    return global_config

                self._global_config = await sip.run(listen)
                self._sip = sip
                log.info("SIP gateway listening on %s:%d, rtpengine at %s:%d", host, port, *self.rtpengine)
            return self._sip, self._ng

    def _on_request(self, request: Any, transaction: Any) -> Any:
        """A request outside our dialogs (sippy's thread): a new INVITE is an inbound call."""
        method = request.getMethod()
        if method == "INVITE" and request.getHFBody("to").getTag() is None and self._loop is not None:
            return self._take(request, transaction)
        if method in ("OPTIONS", "NOTIFY"):
            return request.genResponse(200, "OK"), None, None
        if request.getHFBody("to").getTag() is not None:
            return request.genResponse(481, "Call Leg/Transaction Does Not Exist"), None, None
        return request.genResponse(501, "Not Implemented"), None, None

    def _take(self, request: Any, transaction: Any) -> Any:
        """Answers the INVITE as leg B of a new call (sippy sends 100 Trying) and hands it to the asyncio loop."""
        assert self._loop is not None
        if not self._global_config:  # an INVITE in the instant between listening and being ready
            return request.genResponse(503, "Service Unavailable"), None, None
        call = _Call(new_ref(), inbound=True)
        call.b = _Leg("B", _SipThread.get(), self._global_config, call.queue, self._loop)
        sender = request.getHFBody("from").getUrl()
        number = request.getRURI().username or ""
        source = sender.username if E164.fullmatch(sender.username or "") else (
            f"sip:{sender.username}@{sender.host}" if sender.username else f"sip:{sender.host}")
        found = InboundCall(call.ref, str(request.getHFBody("call-id")), source, number, datetime.now(UTC))
        taken = call.b.take(request, transaction)
        self._loop.call_soon_threadsafe(self._arrived, call, found)
        return taken

    def _arrived(self, call: _Call, found: InboundCall) -> None:
        """(the loop) Waits for the caller to give up while Calls routes the call, and reports it."""
        self._calls[call.ref] = call
        call.task = asyncio.get_running_loop().create_task(self._carry(call, self._await_route(call)))
        routing = asyncio.get_running_loop().create_task(self._route_inbound(call, found))
        self._routing.add(routing)
        routing.add_done_callback(self._routing.discard)

    async def _route_inbound(self, call: _Call, found: InboundCall) -> None:
        """Reports the call to Calls (which dials or rejects it), refusing what it cannot route itself."""
        assert call.b is not None
        if not E164.fullmatch(found.destination):
            log.info("inbound call %s to %r refused: not an E.164 number", call.ref, found.destination)
            await self.reject(call.ref, states.NOT_FOUND, report=False)
        elif not call.b.remote_sdp:
            log.info("inbound call %s refused: its INVITE has no SDP offer", call.ref)
            await self._refuse(call, 488, "Not Acceptable Here")
        else:
            call.routing = True
            try:
                await self.report(found)
            except (PermissionDenied, ResourceExhausted) as refused:  # the toll-fraud guards, on a phone's call
                log.warning("call %s from %s to %s refused: %s", call.ref, found.source, found.destination, refused)
                code, reason = (403, "Forbidden") if isinstance(refused, PermissionDenied) else (503, "Service Unavailable")
                await self._refuse(call, code, reason, str(refused))
            except Exception:  # noqa: BLE001 - e.g. Numbers unreachable: the caller is told, not left ringing
                log.exception("routing inbound call %s failed", call.ref)
                await self.reject(call.ref, states.CONGESTION)
            finally:
                call.routing = False
            if call.ended_while_routing is not None:  # the caller gave up before Calls had stored the call
                await self._report(call.ref, states.Event.END, call.ended_while_routing[0],
                                   at=call.ended_while_routing[1])

    async def _refuse(self, call: _Call, code: int, reason: str, warning: str = "") -> None:
        self._calls.pop(call.ref, None)
        await self._cancel_task(call)
        assert call.b is not None
        await call.b.respond(code, reason, warning=warning)

    async def _await_route(self, call: _Call) -> None:
        """Until Calls dials or rejects the call: the caller hanging up (CANCEL) ends it."""
        while True:
            event = await call.queue.get()
            if event.leg == "B" and event.kind in ("hangup", "gone"):
                raise _Ended(states.CANCEL, event.time)

    # --- placing a call -----------------------------------------------------------------------------------

    async def originate(self, order: Origination) -> None:
        call = _Call(order.ref)
        self._calls[order.ref] = call
        call.task = asyncio.get_running_loop().create_task(self._carry(call, self._place(call, order)))

    def _route(self, uri_or_e164: str) -> tuple[str, tuple[str, int], tuple[str, int]] | None:
        """(user, request-URI host, where to send) for a device AOR, a SIP URI or an E.164 number."""
        if uri_or_e164.startswith(("sip:", "sips:")):
            user, host = parse_uri(uri_or_e164)
            return user, host, self.proxy or host
        hop = self.trunk or self.proxy
        return (uri_or_e164, hop, hop) if hop else None

    async def _carry(self, call: _Call, work: Coroutine[Any, Any, None]) -> None:
        """Runs what the network does with the call until it ends; however it ends, its legs and media are
        released and its END is reported (with CONGESTION when something failed), so no call stays up."""
        try:
            await work
        except _Ended as ended:
            await self._end(call, ended.cause, ended.time)
        except (NgError, OSError) as error:
            log.error("call %s failed: %s", call.ref, error)
            await self._end(call, states.CONGESTION)
        except Exception:
            log.exception("carrying call %s failed", call.ref)
            await self._end(call, states.CONGESTION)

    async def _end(self, call: _Call, cause: str, at: datetime | None = None) -> None:
        self._calls.pop(call.ref, None)
        await self._release(call, cause)
        if call.routing:
            call.ended_while_routing = (cause, at)
        else:
            await self._report(call.ref, states.Event.END, cause, at=at)

    async def _place(self, call: _Call, order: Origination) -> None:
        sip, ng = await self._start()
        device = self._route(order.device.aors[0]) if order.device and order.device.aors else None
        callee = self._route(order.destination)
        if device is None or callee is None:
            log.error("call %s: no route to %s (set VOXPLANE_SIP_PROXY or VOXPLANE_SIP_TRUNK)", call.ref,
                      "the caller's device" if device is None else order.destination)
            raise _Ended(states.CONGESTION, datetime.now(UTC))
        offer = await ng.command("offer", call_id=call.ref, from_tag=B_TAG, sdp=PLACEHOLDER_SDP, **NG_FLAGS)
        call.a = _Leg("A", sip, self._global_config, call.queue)
        await call.a.invite(*device, order.destination, offer["sdp"])
        _, a_sdp = await self._answered(call, {"A"}, order.timeout)
        await self._keep(call, call.a)
        toward_b = await ng.command("answer", call_id=call.ref, from_tag=B_TAG, to_tag=A_TAG, sdp=a_sdp, **NG_FLAGS)
        # While B rings, A hears ringback rather than silence (played by rtpengine, repeated up to the timeout).
        repeats = math.ceil(order.timeout / (RINGBACK_ON + RINGBACK_OFF))
        await ng.command("play media", call_id=call.ref, from_tag=A_TAG, blob=ringback_wav(), repeat_times=repeats)
        b_sdp = await self._far_leg_answered(call, order, callee, toward_b["sdp"])
        await ng.command("stop media", call_id=call.ref, from_tag=A_TAG)
        # Tell rtpengine where B is: a re-offer from B's side, then A's answer again. port-latching keeps
        # the port A was given, so A needs no re-INVITE.
        await ng.command("offer", call_id=call.ref, from_tag=B_TAG, to_tag=A_TAG, sdp=b_sdp,
                         **{**NG_FLAGS, "flags": [*NG_FLAGS["flags"], "port-latching"]})
        await ng.command("answer", call_id=call.ref, from_tag=B_TAG, to_tag=A_TAG, sdp=a_sdp, **NG_FLAGS)
        await self._bridged_until_hangup(call)

    async def _far_leg_answered(self, call: _Call, order: Origination,
                                callee: tuple[str, tuple[str, int], tuple[str, int]], sdp: str) -> str:
        """INVITEs the destination (leg B), following up to MAX_REDIRECTS redirects, each to the first Contact
        that is an E.164 number, which goes out through the trunk as a destination of CreateCall would, and
        only if the workspace's toll-fraud guards allow it. B's SDP once it answers (its dialog kept), within
        the timeout."""
        assert self._sip is not None
        deadline = asyncio.get_running_loop().time() + order.timeout
        hop = 0
        while True:
            call.b = _Leg(f"B{hop or ''}", self._sip, self._global_config, call.queue)
            await call.b.invite(*callee, order.caller_id, sdp)
            try:
                _, b_sdp = await self._answered(call, {call.b.name}, deadline - asyncio.get_running_loop().time())
                await self._keep(call, call.b)
                return b_sdp
            except _Redirected as redirected:
                call.redirected.add(call.b.name)
                number = next((user for user in redirected.contacts if E164.fullmatch(user)), None)
                route = self._route(number) if number is not None and hop < MAX_REDIRECTS else None
                if route is None:
                    log.warning("call %s: %s redirected to %s, not followed (%s)", call.ref, order.destination,
                                redirected.contacts, "too many redirects" if hop == MAX_REDIRECTS else
                                "no E.164 number to follow" if number is None else "no route")
                    raise
                try:
                    guards.check_destination(order.guards, guards.destination_of(number), "the redirect's target")
                except PermissionDenied as refused:
                    log.warning("call %s: a redirect of %s not followed: %s", call.ref, order.destination, refused)
                    raise redirected from None
                log.info("call %s: %s redirected to %s: following", call.ref, order.destination, number)
                callee, hop = route, hop + 1

    async def dial(self, ref: str, order: Dial) -> None:
        """Rings every target of an inbound call at once (leg A); the first to answer is bridged to the caller."""
        call = self._calls.get(ref)
        if call is None or not call.inbound or call.bridged:
            return  # it ended meanwhile (the caller hung up): nothing to ring
        await self._cancel_task(call)
        call.device_is_b = order.from_device
        call.task = asyncio.get_running_loop().create_task(self._carry(call, self._connect(call, order)))

    async def _connect(self, call: _Call, order: Dial) -> None:
        sip, ng = await self._start()
        assert call.b is not None
        targets = [route for route in map(self._route, order.targets) if route is not None]
        if not targets:
            log.error("call %s: no route to %s (set VOXPLANE_SIP_PROXY or VOXPLANE_SIP_TRUNK)", call.ref, order.targets)
            raise _Ended(states.CONGESTION, datetime.now(UTC))
        offer = await ng.command("offer", call_id=call.ref, from_tag=B_TAG, sdp=call.b.remote_sdp, **NG_FLAGS)
        for n, target in enumerate(targets):
            fork = _Leg(f"A{n}", sip, self._global_config, call.queue)
            call.forks.append(fork)
            await fork.invite(*target, order.caller_id, offer["sdp"])
        winner, a_sdp = await self._answered(call, {fork.name for fork in call.forks}, order.timeout)
        call.a = next(fork for fork in call.forks if fork.name == winner)
        await self._keep(call, call.a)
        for fork in call.forks:
            if fork is not call.a:
                await fork.end()
        answer = await ng.command("answer", call_id=call.ref, from_tag=B_TAG, to_tag=A_TAG, sdp=a_sdp, **NG_FLAGS)
        await call.b.respond(200, "OK", answer["sdp"])
        await self._keep(call, call.b)
        await self._bridged_until_hangup(call)

    async def _keep(self, call: _Call, leg: _Leg) -> None:
        """Stores the dialog of an established leg (or its new CSeq), for its BYE should this process be
        killed (sip_dialogs.py). Failing to is logged: the call goes on without."""
        call.kept = True
        key = self.dialogs_key
        try:
            dialog = await leg.sip.run(lambda: sip_dialogs.dialog_of(leg.ua, key, call.ref, leg.name[0]))
            await self.db.run_transaction(lambda s: sip_dialogs.keep(s, dialog), write=True)
        except Exception:  # noqa: BLE001 - the call is up all the same
            log.exception("storing the dialog of leg %s of call %s failed", leg.name, call.ref)

    async def _bridged_until_hangup(self, call: _Call) -> None:
        """Reports the answer; then the first leg whose far end hangs up ends the call."""
        call.bridged = True
        await self._report(call.ref, states.Event.ANSWER)
        while True:
            event = await call.queue.get()
            bridged = (call.a.name if call.a else "", call.b.name if call.b else "")  # not a cancelled fork
            if event.leg in bridged and event.kind in ("hangup", "gone"):  # not "fail": a refused re-INVITE
                raise _Ended(states.NORMAL_CLEARING, event.time)  # leaves the dialog up

    async def _answered(self, call: _Call, legs: set[str], timeout: float) -> tuple[str, str]:
        """Waits for the first of `legs` to answer: (its name, its SDP). Reports the call's first ring (and,
        for an inbound call, tells the caller). The call ends with the cause of the last leg that failed,
        NO_ANSWER when `timeout` passes first (the legs are cancelled), CANCEL when the other side hangs up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiting = set(legs)
        while True:
            try:
                event = await asyncio.wait_for(call.queue.get(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise _Ended("NO_ANSWER", datetime.now(UTC)) from None
            if event.leg not in waiting:
                if event.leg in call.redirected:
                    continue  # the late end of a leg a redirect replaced
                if event.leg not in legs and event.kind in ("hangup", "gone"):  # the other side hung up
                    raise _Ended(states.CANCEL, event.time)
                continue
            if event.kind == "ring" and event.code in (180, 183) and not call.rang:  # not a proxy's 100
                call.rang = True
                await self._report(call.ref, states.Event.RING, at=event.time)
                if call.inbound and call.b is not None:
                    await call.b.respond(180, "Ringing")
            elif event.kind == "answer":
                if not event.sdp:
                    raise _Ended(states.CONGESTION, event.time)  # an answer we cannot bridge: no media
                return event.leg, event.sdp
            elif event.kind in ("fail", "redirect", "hangup", "gone"):
                waiting.discard(event.leg)
                if waiting:
                    continue  # another target may still answer
                if event.kind == "fail":
                    raise _Ended(cause_for(event.code or 500), event.time)
                if event.kind == "redirect":
                    raise _Redirected(event.time, event.contacts)
                log.info("call %s: leg %s ended (%s) before it answered", call.ref, event.leg, event.kind)
                raise _Ended(states.CONGESTION, event.time)

    async def _release(self, call: _Call, cause: str = states.CANCEL) -> None:
        """BYE (or CANCEL) whatever leg is still up, refuses an unanswered caller with the response for
        `cause`, and frees the call's media at rtpengine."""
        for leg in (call.b, call.a, *call.forks):
            if leg is not None:
                try:
                    await leg.end(cause)
                except Exception:  # noqa: BLE001 - the other leg and the media must be released all the same
                    log.exception("ending leg %s of call %s failed", leg.name, call.ref)
        if self._ng is not None:
            try:
                await self._ng.command("delete", call_id=call.ref)
            except NgError as error:
                log.info("rtpengine delete of call %s: %s", call.ref, error)
        await self._media_done(call)
        if call.kept:
            key = self.dialogs_key
            try:
                await self.db.run_transaction(lambda s: sip_dialogs.forget(s, key, call.ref), write=True)
            except Exception:  # noqa: BLE001 - the next start sends a BYE the far end no longer knows: 481
                log.exception("deleting the dialogs of call %s failed", call.ref)

    async def _report(self, ref: str, event: states.Event, cause: str | None = None, *,
                      at: datetime | None = None) -> None:
        try:
            await self.report(NetworkEvent(ref, event, cause, "", at or datetime.now(UTC)))
        except Exception:  # noqa: BLE001 - a failed report must not leave the legs up
            log.exception("reporting %s of call %s failed", event.value, ref)

    # --- ending a call ------------------------------------------------------------------------------------

    @staticmethod
    async def _cancel_task(call: _Call) -> None:
        if call.task is not None and not call.task.done() and call.task is not asyncio.current_task():
            call.task.cancel()
            await asyncio.gather(call.task, return_exceptions=True)

    async def _stop(self, ref: str, cause: str = states.CANCEL) -> _Call | None:
        """Ends call `ref` on the network at our side's request (the call's END is stored by Calls)."""
        call = self._calls.pop(ref, None)
        if call is None:
            return None
        await self._cancel_task(call)
        await self._release(call, cause)
        return call

    async def reject(self, ref: str, cause: str, *, report: bool = True) -> None:
        """Refuses an inbound call with the SIP response for `cause` (404, 486, 480…), reported as its END."""
        if await self._stop(ref, cause) is not None and report:
            await self._report(ref, states.Event.END, cause)

    async def hangup(self, ref: str) -> None:
        await self._stop(ref)

    async def cancel(self, ref: str) -> None:
        await self._stop(ref)

    async def close(self) -> None:
        """Ends every call it carries (BYE or CANCEL on each leg; 503 to callers not answered yet), then
        stops listening."""
        for routing in list(self._routing):
            routing.cancel()
        await asyncio.gather(*self._routing, return_exceptions=True)
        await asyncio.gather(*(self._stop(ref, states.CONGESTION) for ref in list(self._calls)))
        if self._sip is not None:
            global_config = self._global_config
            await asyncio.sleep(0.1)  # let sippy hand the last BYEs to its socket before it closes

            def stop_listening() -> None:
                transactions = global_config["_sip_tm"]
                transactions.shutdown()
                # Each ended dialog lingers 32 s (sippy's godead_timeout) before it unregisters from the
                # transaction manager, which shutdown() has taken apart: let those late calls do nothing.
                transactions.unregConsumer = lambda *_args, **_kwargs: None

            await self._sip.run(stop_listening)
            self._sip = None
        if self._ng is not None:
            self._ng.close()
            self._ng = None

    # --- controls of a bridged call -----------------------------------------------------------------------

    def _bridged(self, ref: str) -> _Call:
        call = self._calls.get(ref)
        if call is None or not call.bridged:
            raise states.TransitionRefused(f"Call {ref} is not bridged on this SIP gateway.")
        return call

    async def _media(self, command: str, ref: str, *, over_tcp: bool = False, **arguments: Any) -> dict[str, Any]:
        self._bridged(ref)
        assert self._ng is not None
        try:
            send = self._ng.command_over_tcp if over_tcp else self._ng.command
            return await send(command, call_id=ref, **arguments)
        except NgError as error:
            raise Unavailable(f"The media relay did not carry out the order: {error}") from None

    def _device_tag(self, ref: str) -> str:
        """The rtpengine tag of the device's media: A's, or B's when the agent's phone placed the call."""
        return B_TAG if self._bridged(ref).device_is_b else A_TAG

    async def mute(self, ref: str, mute: bool) -> None:
        """Silences what the caller's device (A) sends: the packets still flow, their payload is silence."""
        await self._media("silence media" if mute else "unsilence media", ref, from_tag=self._device_tag(ref))

    async def hold(self, ref: str, hold: bool) -> None:
        """Re-INVITEs the far end (B; A when the agent's phone placed the call) sendonly, and sendrecv to take
        it off hold."""
        call = self._bridged(ref)
        far = call.a if call.device_is_b else call.b
        assert far is not None
        if call.held != hold:
            call.held = hold
            await far.reinvite(with_direction(far.local_sdp, "sendonly" if hold else "sendrecv"))
            await self._keep(call, far)  # its CSeq moved on

    async def send_dtmf(self, ref: str, digits: str) -> None:
        """RFC 4733 events into the far end's stream, as if the caller's device pressed them."""
        for digit in digits:  # rtpengine takes one digit per command, and queues them
            await self._media("play DTMF", ref, from_tag=self._device_tag(ref), code=digit, duration=DTMF_MS)

    # --- recording and announcements ----------------------------------------------------------------------

    async def record(self, ref: str, start: bool) -> None:
        """rtpengine's `start recording` / `stop recording` (its pcap method); each stop reports the WAV of
        all recorded so far (gateway.Recording), which Calls stores before the order returns."""
        call = self._bridged(ref)
        if self.recordings is None:
            raise FailedPrecondition("This server does not record calls: set VOXPLANE_RTPENGINE_RECORDINGS to "
                                     "rtpengine's --recording-dir (README, 'The SIP gateway').")
        if start == call.recording:
            return
        if start and not call.channel_ports:
            call.channel_ports = await self._leg_ports(ref)
        await self._media("start recording" if start else "stop recording", ref)
        call.recording = start
        if not start:
            await self._report_recording(call)

    async def _leg_ports(self, ref: str) -> list[set[int]]:
        """rtpengine's ports that receive A's media and B's: which party each recorded packet is."""
        assert self._ng is not None
        try:
            tags = (await self._ng.command("query", call_id=ref))["tags"]
        except (NgError, KeyError) as error:
            raise Unavailable(f"The media relay did not carry out the order: {error}") from None
        return [{stream["local port"] for media in tags.get(tag, {}).get("medias", []) for stream in media["streams"]}
                for tag in (A_TAG, B_TAG)]

    async def _report_recording(self, call: _Call) -> None:
        assert self.recordings is not None
        pcaps = await asyncio.to_thread(audio.finished_pcaps, self.recordings, call.ref)
        wav = await asyncio.to_thread(lambda: audio.wav_of([pcap.read_bytes() for pcap in pcaps], call.channel_ports))
        await self.report(Recording(call.ref, wav.data, wav.duration_ms, wav.channels, wav.sample_rate,
                                    datetime.now(UTC)))

    async def _media_done(self, call: _Call) -> None:
        """(the call's end, its media deleted) Reports what was being recorded when it ended, then removes
        rtpengine's files of it; an announcement's end has nothing left to unblock."""
        if call.announcing is not None:
            call.announcing.cancel()
        if not call.channel_ports or self.recordings is None:
            return
        try:
            if call.recording:
                call.recording = False
                await self._report_recording(call)
        except Exception:  # noqa: BLE001 - the call ends all the same
            log.exception("storing the recording of call %s failed", call.ref)
        finally:
            await asyncio.to_thread(audio.remove_recordings, self.recordings, call.ref)

    async def play(self, ref: str, url: str) -> None:
        """Fetches the WAV at `url` (announcements.fetch_wav: guarded, bounded) and has rtpengine play it to
        both parties (over TCP: the file does not fit one NG datagram). rtpengine would send the player's
        stream beside the other party's, so each party's own media is blocked until the file has played."""
        call = self._bridged(ref)
        wav = await announcements.fetch_wav(url, posting.shared_poster())
        if call.announcing is not None:
            call.announcing.cancel()  # this one replaces it
        try:
            for tag in (A_TAG, B_TAG):
                await self._media("block media", ref, from_tag=tag)
            played = [await self._media("play media", ref, over_tcp=True, from_tag=tag, blob=wav) for tag in (A_TAG, B_TAG)]
        except Unavailable:
            await self._unblock(ref)
            raise
        lasts = max(int(reply.get("duration", 0)) for reply in played) / 1000
        call.announcing = asyncio.get_running_loop().create_task(self._unblock(ref, after=lasts))

    async def _unblock(self, ref: str, after: float = 0) -> None:
        await asyncio.sleep(after)
        for tag in (A_TAG, B_TAG):
            try:
                await self._media("unblock media", ref, from_tag=tag)
            except (Unavailable, states.TransitionRefused) as error:  # the call ended meanwhile
                log.info("unblocking the media of call %s after an announcement: %s", ref, error)

    # --- not carried on SIP yet ---------------------------------------------------------------------------

    @staticmethod
    def _unimplemented(what: str) -> Unimplemented:
        return Unimplemented(f"The SIP gateway does not {what} yet (see README, 'The SIP gateway').")

    async def transfer(self, ref: str, to: str, attended: bool) -> None:
        raise self._unimplemented("transfer calls")

    async def redirect(self, ref: str, webhook: str) -> None:
        raise self._unimplemented("redirect calls")

    async def _not_answering(self, ref: str, what: str) -> Unimplemented:
        """A webhook's reply this gateway cannot carry out: the caller is refused (503, CONGESTION) rather
        than left ringing."""
        call = self._calls.get(ref)
        if call is not None and call.inbound and not call.bridged:
            log.warning("inbound call %s refused: the SIP gateway does not %s yet", ref, what)
            await self.reject(ref, states.CONGESTION)
        return self._unimplemented(what)

    async def answer(self, ref: str) -> None:
        raise await self._not_answering(ref, "answer inbound calls itself (play, gather)")

    async def voicemail(self, ref: str) -> None:
        raise await self._not_answering(ref, "take calls to a voicemail")

    async def gather(self, ref: str, order: Gather) -> None:
        raise await self._not_answering(ref, "gather DTMF")
