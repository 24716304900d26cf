"""Runners: which Calls process carries each running call, and what happens to the calls of one that stopped.

Every Calls process is a runner and stamps its heartbeat every few seconds. A call records its
runner; the calls of a runner that stopped stamping can no longer be controlled, so any runner ends
them (FAILED, cause SERVICE_RESTART) at its start or at its next beat. A starting runner also ends at
once the calls of runners whose process is gone, as their free lock tells (liveness.py).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.orm import Session

from ..persistence.base import utcnow
from . import states
from .live import change_call, ending
from .models import Call, CallRunner


def start_runner(session: Session, runner_id: str, stale_after: timedelta, dead: Collection[str] = ()) -> int:
    """Records a starting Calls process, and ends the calls of those that stopped: silent ones, and the
    `dead` whose lock was free (liveness.py), at once. How many calls it ended."""
    now = utcnow()
    if dead:
        ended = _end_running(session, Call.runner_id.in_(dead))
        session.execute(delete(CallRunner).where(CallRunner.id.in_(dead)))
    else:
        ended = 0
    session.add(CallRunner(id=runner_id, start_time=now, heartbeat_time=now))
    return ended + end_orphaned_calls(session, now - stale_after)


def beat(session: Session, runner_id: str, stale_after: timedelta) -> int:
    """Stamps the runner's heartbeat and ends the calls of runners that stopped; how many it ended.

    A runner found missing (taken for stopped while it could not beat, and its calls ended) is recorded again.
    """
    now = utcnow()
    stamped = session.execute(update(CallRunner).where(CallRunner.id == runner_id).values(heartbeat_time=now))
    if stamped.rowcount == 0:  # type: ignore[attr-defined]  # an UPDATE's Result is a CursorResult
        session.add(CallRunner(id=runner_id, start_time=now, heartbeat_time=now))
    return end_orphaned_calls(session, now - stale_after)


def end_orphaned_calls(session: Session, cutoff: datetime) -> int:
    """Ends every running call whose runner has not beaten since `cutoff` (or is unknown), since nothing can
    control it any more, and forgets those runners. Returns how many calls."""
    alive = select(CallRunner.id).where(CallRunner.heartbeat_time > cutoff)
    ended = _end_running(session, or_(Call.runner_id.is_(None), Call.runner_id.not_in(alive)))
    session.execute(delete(CallRunner).where(CallRunner.heartbeat_time <= cutoff))
    return ended


def stop_runner(session: Session, runner_id: str) -> int:
    """A Calls process stopping: ends the calls it carried and forgets it; how many calls."""
    ended = _end_running(session, Call.runner_id == runner_id)
    session.execute(delete(CallRunner).where(CallRunner.id == runner_id))
    return ended


def _end_running(session: Session, carried_by: ColumnElement[bool]) -> int:
    """Ends the running calls `carried_by` selects: FAILED, cause SERVICE_RESTART, each with its HANGUP
    event. Returns how many."""
    calls = session.scalars(select(Call).where(Call.status.in_(states.ACTIVE), carried_by).with_for_update()).all()
    now = utcnow()
    for call in calls:
        change_call(session, call, ending(states.SERVICE_RESTART), now)
    return len(calls)
