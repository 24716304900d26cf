"""The network side of calls, behind one narrow interface, and the built-in simulated network.

The Calls service tells a `CallGateway` what to do (originate, hang up, mute…);
the gateway reports what the network did (ringing, answer, hangup with a
cause, DTMF) through the `report` callback it was built with. A SIP or
media-server gateway implements the same interface.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable

from ..persistence.base import utcnow
from . import states
from .states import NetworkEvent

log = logging.getLogger("voxplane.calls.gateway")


Report = Callable[[NetworkEvent], Awaitable[None]]


class CallGateway(abc.ABC):
    """Places and controls calls on the network. Every method returns once the network took the order."""

    def __init__(self, report: Report):
        self.report = report

    @abc.abstractmethod
    async def originate(self, ref: str, from_party: str, to: str, caller_id: str, timeout: int) -> None: ...

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

    `ring_delay` is the time from originate to ringing, `answer_delay` from
    ringing to the answer (or to BUSY).
    """

    def __init__(self, report: Report, *, ring_delay: float = 0.05, answer_delay: float = 0.1):
        super().__init__(report)
        self.ring_delay = ring_delay
        self.answer_delay = answer_delay
        self._calls: dict[str, asyncio.Task[None]] = {}
        # (ref, order, args): the latest orders it was given, for tests and debugging.
        self.orders: collections.deque[tuple[str, str, tuple[object, ...]]] = collections.deque(maxlen=1000)

    async def originate(self, ref: str, from_party: str, to: str, caller_id: str, timeout: int) -> None:
        self.orders.append((ref, "originate", (from_party, to, caller_id, timeout)))
        task = asyncio.get_running_loop().create_task(self._run(ref, to, timeout))
        self._calls[ref] = task
        task.add_done_callback(lambda _: self._calls.pop(ref, None))

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

    async def _report(self, ref: str, event: states.Event, cause: str | None = None) -> None:
        try:
            await self.report(NetworkEvent(ref, event, cause, time=utcnow()))
        except Exception:  # noqa: BLE001 - a failed report must not kill the simulated network
            log.exception("reporting %s of call %s failed", event.value, ref)

    def _stop(self, ref: str) -> None:
        task = self._calls.pop(ref, None)
        if task is not None:
            task.cancel()

    async def hangup(self, ref: str) -> None:
        self.orders.append((ref, "hangup", ()))
        self._stop(ref)

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
