"""How long events are kept: a cursor older than that may have lost its successors, and is refused."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from ..core.errors import OutOfRange
from ..persistence.base import utcnow
from . import outbox

# Events are pruned this long after they stop being resumable, so that none a cursor still in range
# needs is gone (a transaction's events are stamped a moment before it commits).
PRUNE_MARGIN = timedelta(hours=1)
PRUNE_INTERVAL = 3600.0  # seconds between two prunes


def check_resumable(cursor_time: datetime, retention: timedelta, start_over: str) -> None:
    """Refuses (OUT_OF_RANGE, saying `start_over`) a cursor older than the events kept."""
    if cursor_time < utcnow() - retention:
        days = retention / timedelta(days=1)
        raise OutOfRange(f"The cursor is older than the {days:g} days events are kept; {start_over}.")


def prune(session: Session, retention: timedelta) -> int:
    """Deletes the events no cursor in range needs; how many."""
    return outbox.prune(session, utcnow() - retention - PRUNE_MARGIN)
