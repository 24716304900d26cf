"""What came of the steering POSTs (Calls' steering): stored by event and URL when the outcome is known,
and shown on the delivery of the same event and URL, which the dispatcher makes from the outbox later
(or has made already: either order works)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from ..persistence.db import Database
from .models import Delivery, Steering

APPLIED, NO_INSTRUCTION, TIMEOUT, ERROR, INVALID_REPLY = "APPLIED", "NO_INSTRUCTION", "TIMEOUT", "ERROR", "INVALID_REPLY"
RESULTS = (APPLIED, NO_INSTRUCTION, TIMEOUT, ERROR, INVALID_REPLY)


@dataclass(frozen=True)
class Outcome:
    """One steering POST's outcome (WebhookSteering in the contract)."""

    result: str  # one of RESULTS
    request_time: datetime
    outcome_time: datetime
    instruction: str = ""  # JSON, when APPLIED
    error: str = ""
    response_code: int = 0


async def record(db: Database, event_row_id: int, url: str, outcome: Outcome) -> None:
    """Stores what came of steering with event `event_row_id` at `url`; a second POST of the same
    event to the same URL (none is made today) replaces the first's."""
    assert outcome.result in RESULTS, outcome.result

    def store(session: Session) -> None:
        row = session.get(Steering, (event_row_id, url)) or Steering(event_row_id=event_row_id, url=url)
        row.result, row.instruction, row.error = outcome.result, outcome.instruction[:1024], outcome.error[:512]
        row.response_code, row.request_time, row.outcome_time = (
            outcome.response_code, outcome.request_time, outcome.outcome_time
        )
        session.add(row)

    await db.run_transaction(store, write=True)


def steerings_of(session: Session, deliveries: Iterable[Delivery]) -> dict[tuple[int, str], Steering]:
    """The steering outcomes of these deliveries' events and URLs, by (event row id, URL)."""
    keys = {(d.event_row_id, d.url) for d in deliveries}
    if not keys:
        return {}
    found = session.scalars(select(Steering).where(tuple_(Steering.event_row_id, Steering.url).in_(keys)))
    return {(s.event_row_id, s.url): s for s in found}
