"""The network side of calls, behind one narrow interface, and the built-in simulated network.

The Calls service tells a `CallGateway` what to do (originate, answer, dial, hang up, mute…); the
gateway reports what the network did (ringing, answer, hangup with a cause, DTMF, each at the
network's time) and the inbound calls it receives, through the `report` callback it was built with
(`runner.build_gateway`). A SIP or media-server gateway implements the same interface.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..persistence.base import new_ref, utcnow
from . import states
from .guards import Guards
from .states import NetworkEvent

log = logging.getLogger("voxplane.calls.gateway")


@dataclass(frozen=True)
class InboundCall:
    """A call the network received for `destination`: reported under a `ref` the gateway chose, which
    the call keeps (and every later order and event of it uses)."""

    ref: str
    network_call_id: str  # the network's own id (a SIP Call-ID)
    source: str  # the caller: E.164 or a SIP URI
    destination: str  # the number called, E.164
    time: datetime


@dataclass(frozen=True)
class Recording:
    """What the network recorded of call `ref` so far, as one WAV file (it replaces any earlier one)."""

    ref: str
    wav: bytes
    duration_ms: int
    channels: int
    sample_rate: int
    time: datetime


# What a gateway reports: a change of a call, an inbound call (for which the callback returns what
# Calls made of it; a gateway needs nothing back), or a call's recording.
Report = Callable[[NetworkEvent | InboundCall | Recording], Awaitable[Any]]


@dataclass(frozen=True)
class Device:
    """The agent whose phone an outbound call rings first: where a SIP network reaches it."""

    agent_ref: str
    aors: tuple[str, ...]  # sip:username@domain, one per domain
    domain: str  # the first of its domains


@dataclass(frozen=True)
class Origination:
    """What a network needs to place an outbound call."""

    ref: str
    source: str  # an agent ref, or a number of the workspace
    destination: str  # E.164 or a SIP URI
    caller_id: str  # shown to the callee; "": anonymous
    device: Device | None  # whose phone rings first
    webhook: str | None  # the handler told of the call's events
    timeout: int  # seconds the callee may take to answer
    guards: Guards = Guards()  # the workspace's toll-fraud guards, for where a redirect would take the call


@dataclass(frozen=True)
class Dial:
    """Ring `targets` (E.164 or SIP URIs) for a call that came in; the first to answer is bridged."""

    targets: tuple[str, ...]
    caller_id: str  # shown to the targets; "": anonymous
    timeout: int
    # The caller is an agent's device (its phone placed the call), not the far party: the controls act
    # on it as on the device of a CreateCall (mute its audio, hold the targets).
    from_device: bool = False


@dataclass(frozen=True)
class Gather:
    """Collect up to `max_digits` DTMF digits within `timeout` seconds, after an optional announcement."""

    max_digits: int
    timeout: float
    announcement: str = ""


class CallGateway(abc.ABC):
    """Places and controls calls on the network. Every method returns once the network took the order."""

    def __init__(self, report: Report):
        self.report = report

    @abc.abstractmethod
    async def originate(self, order: Origination) -> None: ...

    @abc.abstractmethod
    async def answer(self, ref: str) -> None:
        """Answers a call that came in (reported as ANSWER)."""

    @abc.abstractmethod
    async def reject(self, ref: str, cause: str) -> None:
        """Refuses a call that came in, with a hangup cause (reported as its END)."""

    @abc.abstractmethod
    async def dial(self, ref: str, order: Dial) -> None: ...

    @abc.abstractmethod
    async def voicemail(self, ref: str) -> None:
        """Hands a call that came in to the voicemail (which answers it)."""

    @abc.abstractmethod
    async def gather(self, ref: str, order: Gather) -> None:
        """Collects DTMF on an answered call; what was pressed is reported as DTMF ("" when nothing)."""

    @abc.abstractmethod
    async def hangup(self, ref: str) -> None: ...

    @abc.abstractmethod
    async def cancel(self, ref: str) -> None: ...

    @abc.abstractmethod
    async def mute(self, ref: str, mute: bool) -> None: ...

    @abc.abstractmethod
    async def hold(self, ref: str, hold: bool) -> None: ...

    @abc.abstractmethod
    async def record(self, ref: str, start: bool) -> None: ...

    @abc.abstractmethod
    async def play(self, ref: str, url: str) -> None: ...

    @abc.abstractmethod
    async def transfer(self, ref: str, to: str, attended: bool) -> None: ...

    @abc.abstractmethod
    async def send_dtmf(self, ref: str, digits: str) -> None: ...

    @abc.abstractmethod
    async def redirect(self, ref: str, webhook: str) -> None: ...

    async def start(self) -> None:  # noqa: B027 - optional: a network that takes inbound calls listens
        """Starts taking inbound calls from the network (the server's start calls it)."""

    async def close(self) -> None:  # noqa: B027 - optional: most gateways have nothing to stop
        """Stops reporting; calls on the network are left as they are."""


# The simulated network's test destinations (any other destination answers).
ANSWERS = "+15005550001"
BUSY = "+15005550002"
NO_ANSWER = "+15005550003"  # rings until the call's timeout
FAILS = "+15005550004"  # CONGESTION, before ringing
NOT_FOUND = "+15005550005"  # NOT_FOUND, before ringing
STAYS_QUEUED = "+15005550007"  # never rings: QUEUED until cancelled or the timeout (NO_ANSWER)
FAR_END_HANGS_UP = "+1500555006"  # + N: answers, then the far end hangs up after N seconds


class SimulatedGateway(CallGateway):
    """A network in asyncio tasks, for development and tests: the destination picks the outcome.

    `ring_delay` is the time from originate (or dial) to ringing, `answer_delay` from ringing to the
    answer (or to BUSY). `inject` reports an inbound call, whose caller presses the digits given
    when a gather asks.
    """

    def __init__(self, report: Report, *, ring_delay: float = 0.05, answer_delay: float = 0.1):
        super().__init__(report)
        self.ring_delay = ring_delay
        self.answer_delay = answer_delay
        self._calls: dict[str, asyncio.Task[None]] = {}
        self._digits: dict[str, str] = {}  # what the caller of each injected call presses
        # (ref, order, args): the latest orders it was given, for tests and debugging.
        self.orders: collections.deque[tuple[str, str, tuple[object, ...]]] = collections.deque(maxlen=1000)

    async def originate(self, order: Origination) -> None:
        ref = order.ref
        self.orders.append((ref, "originate", (order.source, order.destination, order.caller_id, order.timeout)))
        self._start(ref, self._run(ref, order.destination, order.timeout))

    def _start(self, ref: str, work: Coroutine[Any, Any, None]) -> None:
        """Runs what the network does next for call `ref`, in place of what it was doing."""
        self._stop(ref)
        task = asyncio.get_running_loop().create_task(work)
        self._calls[ref] = task
        task.add_done_callback(lambda done: self._calls.pop(ref, None) if self._calls.get(ref) is done else None)

    async def inject(self, source: str, destination: str, digits: str = "") -> Any:
        """Reports an inbound call from `source` to `destination`; returns what Calls made of it."""
        ref = new_ref()
        self._digits[ref] = digits
        return await self.report(InboundCall(ref, f"sim-{ref}", source, destination, utcnow()))

    async def answer(self, ref: str) -> None:
        self.orders.append((ref, "answer", ()))
        await self._report(ref, states.Event.ANSWER)

    async def reject(self, ref: str, cause: str) -> None:
        self.orders.append((ref, "reject", (cause,)))
        self._stop(ref)
        self._digits.pop(ref, None)
        await self._report(ref, states.Event.END, cause)

    async def dial(self, ref: str, order: Dial) -> None:
        """The first target picks the outcome, as an originate's destination does."""
        self.orders.append((ref, "dial", (order.targets, order.caller_id, order.timeout)))
        self._start(ref, self._run(ref, order.targets[0], order.timeout))

    async def voicemail(self, ref: str) -> None:
        self.orders.append((ref, "voicemail", ()))
        await self._report(ref, states.Event.ANSWER)

    async def gather(self, ref: str, order: Gather) -> None:
        self.orders.append((ref, "gather", (order.max_digits, order.timeout, order.announcement)))
        self._start(ref, self._press(ref, order))

    async def _press(self, ref: str, order: Gather) -> None:
        """The caller presses their digits (up to `max_digits`) at once, or nothing until the timeout."""
        digits = self._digits.get(ref, "")[: order.max_digits]
        await asyncio.sleep(self.ring_delay if digits else order.timeout)
        await self._report(ref, None, dtmf=digits)

    async def _run(self, ref: str, to: str, timeout: int) -> None:
        end = states.Event.END
        await asyncio.sleep(self.ring_delay)
        if to in (FAILS, NOT_FOUND):
            await self._report(ref, end, states.CONGESTION if to == FAILS else states.NOT_FOUND)
            return
        if to == STAYS_QUEUED:
            await asyncio.sleep(timeout)
            await self._report(ref, end, "NO_ANSWER")
            return
        await self._report(ref, states.Event.RING)
        if to == NO_ANSWER:
            await asyncio.sleep(timeout)
            await self._report(ref, end, "NO_ANSWER")
            return
        await asyncio.sleep(self.answer_delay)
        if to == BUSY:
            await self._report(ref, end, "BUSY")
            return
        await self._report(ref, states.Event.ANSWER)
        suffix = to.removeprefix(FAR_END_HANGS_UP)
        if to.startswith(FAR_END_HANGS_UP) and len(suffix) == 1 and suffix.isdigit():
            await asyncio.sleep(int(suffix))
            await self._report(ref, end, states.NORMAL_CLEARING)

    async def _report(self, ref: str, event: states.Event | None, cause: str | None = None, dtmf: str = "") -> None:
        try:
            await self.report(NetworkEvent(ref, event, cause, dtmf, utcnow()))
        except Exception:  # noqa: BLE001 - a failed report must not kill the simulated network
            log.exception("reporting %s of call %s failed", event.value if event else "DTMF", ref)

    def _stop(self, ref: str) -> None:
        task = self._calls.pop(ref, None)
        if task is not None:
            task.cancel()

    async def hangup(self, ref: str) -> None:
        self.orders.append((ref, "hangup", ()))
        self._stop(ref)
        self._digits.pop(ref, None)

    async def cancel(self, ref: str) -> None:
        self.orders.append((ref, "cancel", ()))
        self._stop(ref)

    async def mute(self, ref: str, mute: bool) -> None:
        self.orders.append((ref, "mute", (mute,)))

    async def hold(self, ref: str, hold: bool) -> None:
        self.orders.append((ref, "hold", (hold,)))

    async def record(self, ref: str, start: bool) -> None:
        self.orders.append((ref, "record", (start,)))

    async def play(self, ref: str, url: str) -> None:
        self.orders.append((ref, "play", (url,)))

    async def transfer(self, ref: str, to: str, attended: bool) -> None:
        self.orders.append((ref, "transfer", (to, attended)))
        if not attended:
            self._stop(ref)  # the far end now talks to the transfer target, not through this call

    async def send_dtmf(self, ref: str, digits: str) -> None:
        self.orders.append((ref, "send_dtmf", (digits,)))

    async def redirect(self, ref: str, webhook: str) -> None:
        self.orders.append((ref, "redirect", (webhook,)))

    async def close(self) -> None:
        tasks = list(self._calls.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._calls.clear()
        self._digits.clear()
