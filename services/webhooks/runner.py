"""The delivery worker of a Webhooks server: it turns the outbox into deliveries and sends them.

Two loops. The dispatcher follows the outbox (dispatch.py). The sender keeps up to `concurrency`
deliveries in flight: each round records the answers that came back and claims as many due
deliveries as there is room for, in one transaction, so a delivered event's successor in the same
resource can go out in the very next round. Both poll the database briefly when idle: the outbox is
the truth, and a replica needs no message from another to find its work.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from datetime import timedelta

from prometheus_client import Counter

from ..core import config
from ..events import outbox
from ..persistence.db import Database
from . import deliveries, dispatch, egress
from .deliveries import Attempt, Outcome
from .posting import Reply, post

log = logging.getLogger("voxplane.webhooks")

DISPATCH_BATCH = 250  # events read from the outbox per transaction: short, so that answers are not kept waiting
IDLE_POLL = 0.05  # seconds between two looks at an idle outbox or an empty queue
SWEEP_INTERVAL = 5.0  # seconds between two looks for resources left with no ready delivery
# Seconds a round waits for more answers while fewer than half of those in flight are back: a round's
# transaction costs about the same for 5 answers as for 100.
GATHER = 0.02
CONNECTIONS = 32  # per receiver host (in pools of egress.LANE)

ATTEMPTS = Counter("voxplane_webhook_deliveries", "Webhook delivery attempts, by outcome: delivered (a 2xx), "
                   "http_error (another status), timeout, connection_error, refused (an address not allowed).",
                   ("outcome",))
_OUTCOMES = {name: ATTEMPTS.labels(name) for name in
             ("delivered", "http_error", "timeout", "connection_error", "refused")}


def _outcome(reply: Reply) -> str:
    if reply.refused:
        return "refused"
    if reply.timed_out:
        return "timeout"
    if reply.status_code:  # a 2xx is delivered, as `deliveries.record` has it, whatever came after the status
        return "delivered" if 200 <= reply.status_code < 300 else "http_error"
    return "connection_error"


def _schedule() -> list[float]:
    return config.settings().webhook_retry_schedule


def _lease() -> timedelta:
    """How long a claimed delivery is ours: a send ends well before (it is cut at the timeout)."""
    return timedelta(seconds=config.settings().webhook_timeout + 30)


class DeliveryWorker:
    """The Runtime of the Webhooks service."""

    def __init__(self, db: Database, *, concurrency: int = 256):
        self.db = db
        self.concurrency = concurrency
        self.poster = egress.Poster(connections=CONNECTIONS)
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[Outcome]] = set()
        self._answered: list[Outcome] = []
        self._wake = asyncio.Event()

    async def start(self, endpoint: str) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._dispatching()), loop.create_task(self._sending())]

    async def close(self) -> None:
        """Stops claiming, lets the sends in flight end (their answers recorded), and closes the poster."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=config.settings().webhook_timeout)
        try:
            await self.db.run_transaction(lambda s: deliveries.record(s, self._take_answers(), _schedule()), write=True)
        except Exception:  # noqa: BLE001 - the leases run out, and the deliveries are sent again
            log.exception("could not record the last webhook answers")
        await self.poster.aclose()

    async def _dispatching(self) -> None:
        # Where this worker last left the outbox; the stored position may be further on (a replica's).
        position, read = outbox.START, 0
        swept = time.monotonic()
        written = asyncio.Event()  # events were committed, by any replica (PostgreSQL's LISTEN)
        listener = self.db.listener(outbox.NOTIFY_CHANNEL)
        if listener is not None:
            listener.subscribe(None, written.set)
        while True:
            if time.monotonic() - swept > SWEEP_INTERVAL:
                swept = time.monotonic()
                await self._sweep()
            written.clear()  # before the read: a commit during it means another read
            try:
                if read == DISPATCH_BATCH or await self.db.run_transaction(
                    functools.partial(dispatch.has_new_events, after=position), write=False
                ):
                    read, position = await self.db.run_transaction(
                        functools.partial(dispatch.dispatch, limit=DISPATCH_BATCH), write=True
                    )
                else:
                    read = 0
            except Exception:  # noqa: BLE001 - the database may be away for now, or a replica raced us
                log.exception("dispatching webhook deliveries failed; trying again")
                read = 0
                await asyncio.sleep(1)
            if read:
                self._wake.set()
            if read < DISPATCH_BATCH:
                try:
                    await asyncio.wait_for(written.wait(), outbox.poll_interval(listener, IDLE_POLL))
                except TimeoutError:
                    pass

    async def _sweep(self) -> None:
        try:
            if await self.db.run_transaction(deliveries.unready_resources, write=False):
                mended = await self.db.run_transaction(deliveries.sweep, write=True)
                log.info("%d resource(s) had deliveries pending and none ready; mended", mended)
        except Exception:  # noqa: BLE001 - the next sweep tries again
            log.exception("sweeping webhook deliveries failed")

    def _take_answers(self) -> list[Outcome]:
        answered, self._answered = self._answered, []
        return answered

    async def _sending(self) -> None:
        while True:
            if len(self._answered) * 2 < len(self._in_flight):
                await asyncio.sleep(GATHER)
            answers = self._take_answers()
            room = self.concurrency - len(self._in_flight)
            if not answers and (room <= 0 or not await self._any_due()):
                await self._idle()
                continue
            try:
                claimed = await self.db.run_transaction(
                    functools.partial(deliveries.exchange, answers=answers, room=room, lease=_lease(),
                                      schedule=_schedule()),
                    write=True,
                )
            except Exception:  # noqa: BLE001 - the answers stay for the next round; leases protect the rest
                log.exception("recording webhook answers failed; trying again")
                self._answered = answers + self._answered
                await asyncio.sleep(1)
                continue
            for attempt in claimed:
                task = asyncio.get_running_loop().create_task(self._send(attempt))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            if not claimed and not answers:
                await self._idle()

    async def _any_due(self) -> bool:
        try:
            return await self.db.run_transaction(deliveries.any_due, write=False)
        except Exception:  # noqa: BLE001 - the database may be away for now: look again later
            log.exception("looking for due webhook deliveries failed; trying again")
            return False

    async def _idle(self) -> None:
        """Until an answer comes, the dispatcher makes deliveries, or the poll interval passes."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), IDLE_POLL)
        except TimeoutError:
            pass

    async def _send(self, attempt: Attempt) -> Outcome:
        timeout = config.settings().webhook_timeout
        reply = await post(self.poster, attempt.url, attempt.event_id, attempt.body, attempt.secrets, timeout=timeout)
        _OUTCOMES[_outcome(reply)].inc()
        outcome = Outcome(attempt, reply)
        self._answered.append(outcome)
        self._wake.set()
        return outcome
