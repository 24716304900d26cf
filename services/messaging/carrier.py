"""The seam between Messaging and the network that carries SMS and faxes off-net: a `Carrier`.

The one built in is SIMULATED: nothing leaves the deployment. The recipient picks the outcome:

| recipient      | SMS                                           | fax                                    |
| -------------- | --------------------------------------------- | -------------------------------------- |
| any other      | SENT, then DELIVERED                          | SENT                                   |
| +15005550002   | SENT, then UNDELIVERED                        | busy on every attempt: FAILED (BUSY)   |
| +15005550003   | FAILED (the carrier refuses it)               | no answer: FAILED (NO_ANSWER)          |
| +15005550004   | SENT, then DELIVERED after a slow receipt     | busy once, then SENT on the retry      |

A hand-off is idempotent per message ref: the simulated carrier keeps what it was handed
(carrier_handoffs) and answers a repeat (a worker that stopped mid-send, its message handed off again)
as it answered the first, sending nothing a second time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..persistence.base import new_ref, utcnow
from ..persistence.db import Database
from .models import CarrierHandoff

log = logging.getLogger("voxplane.messaging")

UNDELIVERED_NUMBER, REFUSED_NUMBER, SLOW_NUMBER = "+15005550002", "+15005550003", "+15005550004"


@dataclass(frozen=True)
class Outgoing:
    """One SMS handed to the carrier."""

    ref: str
    source: str
    destination: str
    body: str


@dataclass(frozen=True)
class Answer:
    """What the carrier said of a hand-off: taken (SENT) or refused (FAILED, with why)."""

    ref: str
    accepted: bool
    reason: str = ""


@dataclass(frozen=True)
class Receipt:
    """A delivery report: DELIVERED or UNDELIVERED, at the carrier's time."""

    ref: str
    status: str
    at: datetime
    reason: str = ""


@dataclass(frozen=True)
class FaxAttempt:
    ref: str
    source: str
    destination: str
    pages: int
    attempt: int  # 1 for the first


@dataclass(frozen=True)
class FaxOutcome:
    ref: str
    sent: bool
    failure: str = ""  # BUSY, NO_ANSWER, ...


OnReceipt = Callable[[Receipt], Awaitable[None]]


class Carrier(Protocol):
    async def hand_off(self, messages: Sequence[Outgoing]) -> list[Answer]:
        """Takes SMS for delivery (idempotently per ref); receipts follow through the callback."""
        ...

    async def send_fax(self, fax: FaxAttempt) -> FaxOutcome: ...

    async def close(self) -> None: ...


def _record_handoffs(session: Session, refs: Sequence[str]) -> set[str]:
    """Stores the refs the carrier was handed; returns those it had already (counted as repeat offers)."""
    known = set(session.scalars(select(CarrierHandoff.message_ref).where(CarrierHandoff.message_ref.in_(refs))))
    if known:
        session.execute(update(CarrierHandoff).where(CarrierHandoff.message_ref.in_(known))
                        .values(offers=CarrierHandoff.offers + 1))
    session.add_all(CarrierHandoff(message_ref=ref, carrier_ref=new_ref(), offers=1, create_time=utcnow())
                    for ref in dict.fromkeys(refs) if ref not in known)
    return known


class SimulatedCarrier:
    """The simulated carrier: answers at once, sends receipts after `receipt_delay` seconds."""

    def __init__(self, db: Database, on_receipt: OnReceipt, *, receipt_delay: float, slow_receipt_delay: float):
        self.db = db
        self.on_receipt = on_receipt
        self.receipt_delay = receipt_delay
        self.slow_receipt_delay = slow_receipt_delay
        self._pending: set[asyncio.Task[None]] = set()

    async def hand_off(self, messages: Sequence[Outgoing]) -> list[Answer]:
        taking = [m for m in messages if m.destination != REFUSED_NUMBER]
        if taking:
            repeats = await self.db.run_transaction(lambda s: _record_handoffs(s, [m.ref for m in taking]), write=True)
            if repeats:
                log.info("simulated carrier: %d repeated hand-off(s), not sent again", len(repeats))
        for message in taking:  # a repeat gets its receipt again: receipts never move a message back
            self._later(message)
        return [
            Answer(m.ref, False, "The carrier refused the message (simulated test number).")
            if m.destination == REFUSED_NUMBER else Answer(m.ref, True)
            for m in messages
        ]

    def _later(self, message: Outgoing) -> None:
        delay = self.slow_receipt_delay if message.destination == SLOW_NUMBER else self.receipt_delay
        undelivered = message.destination == UNDELIVERED_NUMBER

        async def report() -> None:
            await asyncio.sleep(delay)
            receipt = Receipt(message.ref, "UNDELIVERED" if undelivered else "DELIVERED", utcnow(),
                              "The handset could not be reached (simulated test number)." if undelivered else "")
            try:
                await self.on_receipt(receipt)
            except Exception:  # noqa: BLE001 - a receipt lost is a message left SENT, as with a real carrier
                log.exception("the receipt of message %s could not be stored", message.ref)

        task = asyncio.get_running_loop().create_task(report())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def send_fax(self, fax: FaxAttempt) -> FaxOutcome:
        await asyncio.sleep(self.receipt_delay)
        if fax.destination == UNDELIVERED_NUMBER:
            return FaxOutcome(fax.ref, False, "BUSY")
        if fax.destination == REFUSED_NUMBER:
            return FaxOutcome(fax.ref, False, "NO_ANSWER")
        if fax.destination == SLOW_NUMBER and fax.attempt == 1:
            return FaxOutcome(fax.ref, False, "BUSY")
        return FaxOutcome(fax.ref, True)

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
