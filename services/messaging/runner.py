"""This Messaging process at work: accepting messages many to a transaction, and the worker that sends
them when they are due, through the carrier or on-net.

The worker sleeps until the next due time it knows of (a message accepted here wakes it earlier), not
in a tight poll; it looks again at least every IDLE_LOOK seconds for what other replicas accepted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from ..core import config, workspaces
from ..core.auth import Caller
from ..core.errors import InvalidArgument, Unavailable
from ..core.rpc import Incoming
from ..events import watching
from ..events.feed import EventFeed
from ..persistence.base import new_ref, utcnow
from ..persistence.batching import WriteBatcher
from ..persistence.db import Database
from . import delivery, events, faxes, sending
from .carrier import Carrier, FaxAttempt, Outgoing, Receipt, SimulatedCarrier
from .directory import NumbersDirectory
from .models import Faxline, Message

log = logging.getLogger("voxplane.messaging")

SERVICE_WORKSPACE = "voxplane-messaging"
IDLE_LOOK = 2.0  # seconds: how often an idle worker looks for messages other replicas accepted
CLAIM_BATCH = 200


class Runner:
    """One Messaging process: its worker id, carrier, write batchers and Numbers client."""

    def __init__(self, db: Database, carrier: Carrier | None = None):
        self.db = db
        self.id = new_ref()
        settings = config.settings()
        self.carrier: Carrier = carrier or SimulatedCarrier(
            db, self._on_receipt, receipt_delay=settings.sim_receipt_delay,
            slow_receipt_delay=settings.sim_slow_receipt_delay,
        )
        self.lease = timedelta(seconds=settings.messaging_lease)
        self.feed = EventFeed(db, events.TOPIC)  # what this process's WatchMessageEvents streams read
        self.accepting = WriteBatcher(db, sending.insert_messages)
        self.answers = WriteBatcher(db, delivery.handed_off)
        self.receipts = WriteBatcher(db, delivery.receipts)
        self._directory: NumbersDirectory | None = None
        self._endpoint: str | None = None
        self._service_key: str | None = None
        self._made_service_key = False
        self._wake = asyncio.Event()
        self._working: asyncio.Task[None] | None = None
        self._pruning: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    @property
    def simulated(self) -> bool:
        return isinstance(self.carrier, SimulatedCarrier)

    async def start(self, endpoint: str) -> None:
        if self.simulated:
            log.warning("Messaging sends off-net SMS and faxes to the SIMULATED carrier: nothing reaches a phone "
                        "(see README, 'Messaging')")
        self._endpoint = endpoint
        self._working = asyncio.get_running_loop().create_task(self._work())
        self._pruning = asyncio.get_running_loop().create_task(watching.keep_pruning(self.db))

    async def close(self) -> None:
        for task in (self._working, self._pruning):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self.carrier.close()
        for batcher in (self.accepting, self.answers, self.receipts):
            await batcher.close()
        if self._directory is not None:
            await self._directory.close()
        if self._made_service_key and self._service_key:
            key_id = self._service_key.split("_")[1]
            await self.db.run_transaction(lambda s: workspaces.revoke_key(s, key_id), write=True)

    def directory(self) -> NumbersDirectory:
        if self._directory is None:
            endpoint = config.settings().numbers_endpoint or self._endpoint
            if not endpoint:
                raise Unavailable("The Messaging service does not know where Numbers is; retry shortly.")
            self._directory = NumbersDirectory(endpoint)
        return self._directory

    async def _key(self) -> str:
        if self._service_key is None:
            configured = config.settings().messaging_service_key
            self._made_service_key = not configured
            self._service_key = configured or await self.db.run_transaction(
                lambda s: workspaces.new_service_key(s, SERVICE_WORKSPACE), write=True
            )
        return self._service_key

    # --- accepting ---------------------------------------------------------------------------

    async def send(self, caller: Caller, incoming: Incoming, new: sending.NewMessage) -> Message | sending.Stored:
        """Stores `new` QUEUED or SCHEDULED (its sender checked with Numbers); a retry of an earlier send
        (its request_id) returns the message that one stored."""
        if new.request_id:
            earlier = await self._earlier(caller, new.request_id)
            if earlier is not None:
                return earlier
        if new.source_is_number and not await self.directory().owns_number(
            incoming.api_key, caller.workspace_ref, incoming.time_remaining, new.source
        ):
            raise sending.sender_not_owned(new.source)
        try:
            message = await self.accepting.submit(sending.Accepted(caller.workspace_id, new))
        except IntegrityError:  # the request_id's unique key: a concurrent try of the same send won
            earlier = await self._earlier(caller, new.request_id) if new.request_id else None
            if earlier is None:
                raise InvalidArgument.of("request_id", "is already used") from None
            return earlier
        self.wake()
        return message

    async def _earlier(self, caller: Caller, request_id: str) -> Message | None:
        return await self.db.run_transaction(
            lambda s: sending.earlier_message(s, caller.workspace_id, request_id), write=False
        )

    def wake(self) -> None:
        """Messages or events were stored: the worker looks for due messages, the streams for events."""
        self._wake.set()
        self.feed.wake()

    async def send_fax(self, caller: Caller, new: faxes.NewFax, pdf: bytes) -> Message:
        pages = await asyncio.to_thread(faxes.page_count, pdf)  # pypdf parses: off the event loop
        fax = await self.db.run_transaction(lambda s: faxes.insert_fax(s, caller, new, pdf, pages), write=True)
        self.wake()
        return fax

    async def create_faxline(
        self, caller: Caller, incoming: Incoming, number: str, fields: faxes.FaxlineFields
    ) -> Faxline:
        e164 = faxes.checked_faxline_number(number)
        if not await self.directory().owns_number(incoming.api_key, caller.workspace_ref, incoming.time_remaining, e164):
            raise InvalidArgument.of("number", f"{e164} is not a number the workspace holds ACTIVE")
        return await self.db.run_transaction(lambda s: faxes.create_faxline(s, caller, e164, fields), write=True)

    # --- the worker --------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            try:
                claimed = await self.db.run_transaction(
                    lambda s: delivery.claim(s, self.id, self.lease, CLAIM_BATCH), write=True
                )
                if claimed:
                    self.feed.wake()
                    self._dispatch(claimed)
                    continue
                due = await self.db.run_transaction(delivery.next_due, write=False)
            except Exception:  # noqa: BLE001 - the database may be away for now: look again shortly
                log.exception("the Messaging worker could not claim messages")
                await asyncio.sleep(1)
                continue
            wait = IDLE_LOOK if due is None else min(IDLE_LOOK, max(0.0, (due - utcnow()).total_seconds()))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    def _dispatch(self, claimed: list[delivery.Claimed]) -> None:
        sms = [c for c in claimed if c.type == "SMS"]
        faxes = [c for c in claimed if c.type == "FAX"]
        if sms:
            self._spawn(self._send_sms(sms))
        for fax in faxes:
            self._spawn(self._send_fax(fax))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _send_sms(self, batch: list[delivery.Claimed]) -> None:
        try:
            key = await self._key()
            routes = await asyncio.gather(*(self.directory().route(key, c.ref, c.destination) for c in batch))
            off_net = [c for c, route in zip(batch, routes, strict=True) if route is None]
            for route in routes:
                if route is not None:
                    await self.db.run_transaction(
                        functools.partial(delivery.delivered_on_net, worker=self.id, delivery=route), write=True
                    )
            if off_net:
                answers = await self.carrier.hand_off(
                    [Outgoing(c.ref, c.source, c.destination, c.body) for c in off_net]
                )
                await asyncio.gather(*(
                    self.answers.submit((self.id, delivery.HandedOff(a.ref, a.accepted, a.reason))) for a in answers
                ))
                self.feed.wake()
            if any(routes):
                self.wake()  # a HELP reply may be queued
        except Exception:  # noqa: BLE001 - the claims lapse and another round sends them again
            log.exception("sending %d SMS failed; they are retried when their claim lapses", len(batch))

    async def _send_fax(self, fax: delivery.Claimed) -> None:
        try:
            outcome = await self.carrier.send_fax(FaxAttempt(fax.ref, fax.source, fax.destination, fax.page_count,
                                                             fax.attempt))
            retry = timedelta(seconds=config.settings().fax_retry_delay)
            await self.db.run_transaction(
                lambda s: delivery.fax_attempted(s, self.id, fax.ref, outcome.sent, outcome.failure, retry), write=True
            )
            self.wake()
        except Exception:  # noqa: BLE001 - the claim lapses and another round tries again
            log.exception("sending fax %s failed; it is retried when its claim lapses", fax.ref)

    async def _on_receipt(self, receipt: Receipt) -> None:
        await self.receipts.submit((receipt.ref, receipt.status, receipt.at, receipt.reason))
        self.feed.wake()

    # --- inbound -----------------------------------------------------------------------------

    async def simulate_inbound(self, source: str, destination: str, body: str) -> Message:
        if not self.simulated:
            raise sending.FailedPrecondition(
                f"This server's carrier is {config.settings().messaging_carrier!r}, not the simulated one: "
                "inbound messages come from the carrier."
            )
        source, destination, body = sending.checked_inbound(source, destination, body)
        route = await self.directory().route(await self._key(), "", destination)
        if route is None:
            raise sending.not_found_number(destination)
        message = await self.db.run_transaction(
            lambda s: sending.receive_at(s, route.workspace_ref, source, destination, body, route.webhook), write=True
        )
        self.wake()  # a HELP reply may be queued
        return message
