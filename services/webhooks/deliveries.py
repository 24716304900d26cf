"""Rules of deliveries: which are due, who sends them, what an answer does to them, and redelivery.

A worker claims due deliveries by leasing them (`lease_time`) in a short transaction (FOR UPDATE SKIP
LOCKED on PostgreSQL; SQLite's writers take turns), sends them without holding the database, then
records the answers. Another worker skips a leased delivery until its lease ends, so two replicas
never send one at once, and a worker that died mid-send has its deliveries sent again once their
lease runs out. Of one resource's deliveries only the oldest pending one is due: a failing one holds
back that resource's later ones, and no others. That one is marked `ready`, so that finding what is
due reads the due ones only, not every delivery waiting behind them; whatever takes a delivery out
of PENDING (or puts one back) marks its resource's next one (`promote`, `reorder`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, bindparam, case, delete, func, or_, select, true, update
from sqlalchemy.orm import Session

from ..core.errors import NotFound
from ..events.models import Event
from ..persistence import keyset
from ..persistence.base import table_of, utcnow
from .endpoints import endpoints_of
from .models import Delivery, Endpoint, WebhookSettings
from .payloads import STANDARD, Body, render
from .posting import Reply
from .signing_keys import NO_SECRET, valid_secrets

PENDING, DELIVERED, FAILED = "PENDING", "DELIVERED", "FAILED"
HOLD = timedelta(seconds=2)  # how often a workspace without a signing secret is looked at again
MAX_RETRY_AFTER = timedelta(days=1)
GONE = "the receiver answered 410 Gone: the endpoint is disabled; re-enable it with UpdateWebhookEndpoint"


@dataclass(frozen=True)
class Attempt:
    """One delivery, claimed, with what it takes to send it."""

    delivery_id: int
    workspace_id: int
    url: str
    event_id: str
    resource_ref: str
    body: Body
    secrets: list[str]
    attempts: int  # made before this one


@dataclass(frozen=True)
class Outcome:
    attempt: Attempt
    reply: Reply


def _due(now: datetime) -> ColumnElement[bool]:
    return (
        (Delivery.status == PENDING) & (Delivery.ready == true()) & (Delivery.next_attempt_time <= now)
        & or_(Delivery.lease_time.is_(None), Delivery.lease_time < now)
    )


DELIVERIES = table_of(Delivery)
MARK_READY = (
    update(DELIVERIES)
    .where(DELIVERIES.c.resource_ref == bindparam("head_ref"), DELIVERIES.c.sequence == bindparam("head_sequence"),
           DELIVERIES.c.status == PENDING)
    .values(ready=True)
)


def promote(session: Session, resource_refs: Iterable[str]) -> None:
    """Marks the oldest PENDING delivery of each of these resources ready (if one is)."""
    wanted = set(resource_refs)
    if not wanted:
        return
    heads = session.execute(
        select(Delivery.resource_ref, func.min(Delivery.sequence))
        .where(Delivery.resource_ref.in_(wanted), Delivery.status == PENDING).group_by(Delivery.resource_ref)
    ).all()
    if heads:  # one indexed UPDATE per head, in one executemany
        session.connection().execute(MARK_READY, [{"head_ref": ref, "head_sequence": sequence} for ref, sequence in heads])


def reorder(session: Session, resource_refs: Iterable[str]) -> None:
    """Marks ready again the oldest PENDING delivery of each resource, after older ones came back."""
    wanted = set(resource_refs)
    session.execute(update(Delivery).where(Delivery.resource_ref.in_(wanted), Delivery.ready).values(ready=False))
    promote(session, wanted)


def unready_resources(session: Session) -> list[str]:
    """The resources with PENDING deliveries and none ready: after a race between replicas (a
    dispatcher that saw a delivery pending, and the worker that delivered it, each not seeing the
    other), what the sweep mends."""
    return list(session.scalars(
        select(Delivery.resource_ref).where(Delivery.status == PENDING).group_by(Delivery.resource_ref)
        .having(func.sum(case((Delivery.ready.is_(True), 1), else_=0)) == 0)
    ))


def sweep(session: Session) -> int:
    """Mends what `unready_resources` finds; returns how many resources it mended."""
    found = unready_resources(session)
    promote(session, found)
    return len(found)


def any_due(session: Session) -> bool:
    """Whether a delivery is due: a read, so that an idle worker takes no write lock to learn it."""
    return session.execute(select(Delivery.id).where(_due(utcnow())).limit(1)).first() is not None


_CLAIMED = (DELIVERIES.c.id, DELIVERIES.c.workspace_id, DELIVERIES.c.url, DELIVERIES.c.event_id,
            DELIVERIES.c.event_row_id, DELIVERIES.c.resource_ref, DELIVERIES.c.attempts)


def claim(session: Session, limit: int, lease: timedelta) -> list[Attempt]:
    """Leases up to `limit` due deliveries and returns those that can be sent. Those of a workspace
    without a signing secret are held (PENDING, saying why); those of a disabled endpoint fail; those
    whose endpoint's payload format has no name for their event (sipgate.io's has four) are dropped.
    Rows, not ORM objects: this runs for every delivery, and one UPDATE leases them all."""
    now = utcnow()
    claimed = session.execute(
        select(*_CLAIMED).where(_due(now)).order_by(Delivery.next_attempt_time, Delivery.id).limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not claimed:
        return []
    secrets = valid_secrets(session, {d.workspace_id for d in claimed})
    endpoints = endpoints_of(session, {(d.workspace_id, d.url) for d in claimed})
    events = {e.id: e for e in session.scalars(select(Event).where(Event.id.in_({d.event_row_id for d in claimed})))}
    attempts: list[Attempt] = []
    held: list[int] = []
    dropped: list[int] = []
    left: set[str] = set()  # resources whose ready one is no longer pending
    for delivery in claimed:
        endpoint = endpoints.get((delivery.workspace_id, delivery.url))
        if delivery.workspace_id not in secrets:
            held.append(delivery.id)
        elif endpoint is not None and not endpoint.enabled:
            _fail_rows(session, [delivery.id], f"the endpoint is disabled: {endpoint.disabled_reason}")
            left.add(delivery.resource_ref)
        elif (body := render(events[delivery.event_row_id], endpoint.payload_format if endpoint else STANDARD)) is None:
            dropped.append(delivery.id)
            left.add(delivery.resource_ref)
        else:
            attempts.append(Attempt(
                delivery.id, delivery.workspace_id, delivery.url, delivery.event_id, delivery.resource_ref, body,
                secrets[delivery.workspace_id], delivery.attempts,
            ))
    if attempts:
        session.execute(update(DELIVERIES).where(DELIVERIES.c.id.in_([a.delivery_id for a in attempts]))
                        .values(lease_time=now + lease))
    if held:
        session.execute(update(DELIVERIES).where(DELIVERIES.c.id.in_(held))
                        .values(last_error=NO_SECRET, next_attempt_time=now + HOLD))
    if dropped:
        session.execute(delete(DELIVERIES).where(DELIVERIES.c.id.in_(dropped)))
    promote(session, left)
    return attempts


def _fail_rows(session: Session, ids: list[int], why: str) -> None:
    session.execute(update(DELIVERIES).where(DELIVERIES.c.id.in_(ids)).values(
        status=FAILED, last_error=why[:512], next_attempt_time=None, lease_time=None, ready=False
    ))


def _fail(delivery: Delivery, why: str) -> None:
    delivery.status, delivery.last_error, delivery.next_attempt_time, delivery.lease_time = FAILED, why[:512], None, None
    delivery.ready = False


def _delay(attempts: int, schedule: Sequence[float], reply: Reply) -> timedelta | None:
    """How long until the next attempt after `attempts` attempts; None: give up."""
    if attempts > len(schedule):
        return None
    if reply.retry_after is not None:
        return min(timedelta(seconds=reply.retry_after), MAX_RETRY_AFTER)
    return timedelta(seconds=schedule[attempts - 1] * random.uniform(0.8, 1.2))


def _is_retried(reply: Reply) -> bool:
    """Connection errors, timeouts, 5xx and 429 are worth another attempt; a refused address, a
    redirect (never followed) and the other 4xx are not."""
    if reply.status_code:
        return reply.status_code >= 500 or reply.status_code == 429
    return not reply.refused


def _describe(reply: Reply) -> str:
    if reply.error:
        return reply.error
    if 300 <= reply.status_code < 400:
        return f"the receiver answered {reply.status_code}, a redirect: redirects are not followed"
    return f"the receiver answered {reply.status_code}"


def record(session: Session, outcomes: Sequence[Outcome], schedule: Sequence[float]) -> None:
    """Stores what the answers mean: delivered (dropped unless the workspace keeps a log), to be
    retried on the schedule, or failed; a 410 also disables the endpoint."""
    if not outcomes:
        return
    now = utcnow()
    logged = set(session.scalars(select(WebhookSettings.workspace_id).where(
        WebhookSettings.workspace_id.in_({o.attempt.workspace_id for o in outcomes}), WebhookSettings.keep_delivery_log
    )))
    # The common answer, a 2xx to a workspace that keeps no log: the row goes, in one statement.
    done: list[Outcome] = []
    rest: list[Outcome] = []
    for outcome in outcomes:
        quiet = 200 <= outcome.reply.status_code < 300 and outcome.attempt.workspace_id not in logged
        (done if quiet else rest).append(outcome)
    if done:
        session.execute(delete(DELIVERIES).where(
            DELIVERIES.c.id.in_([o.attempt.delivery_id for o in done]), DELIVERIES.c.status == PENDING
        ))
    left: set[str] = {o.attempt.resource_ref for o in done}  # resources whose ready one is no longer pending
    rows = {d.id: d for d in session.scalars(select(Delivery).where(Delivery.id.in_({o.attempt.delivery_id for o in rest})))} if rest else {}
    for outcome in rest:
        delivery, reply = rows.get(outcome.attempt.delivery_id), outcome.reply
        if delivery is None or delivery.status != PENDING:
            continue  # retried or dropped meanwhile
        delivery.attempts = outcome.attempt.attempts + 1
        delivery.last_response_code, delivery.lease_time = reply.status_code, None
        if 200 <= reply.status_code < 300:  # kept for the workspace's log
            left.add(delivery.resource_ref)
            delivery.status, delivery.last_error, delivery.deliver_time = DELIVERED, "", now
            delivery.next_attempt_time, delivery.ready = None, False
        elif reply.status_code == 410:
            _fail(delivery, GONE)
            left.add(delivery.resource_ref)
            disable(session, delivery.workspace_id, delivery.url, "the receiver answered 410 Gone", now)
        elif not _is_retried(reply):
            _fail(delivery, _describe(reply))
            left.add(delivery.resource_ref)
        elif (delay := _delay(delivery.attempts, schedule, reply)) is None:
            _fail(delivery, f"gave up after {delivery.attempts} attempts; the last: {_describe(reply)}")
            left.add(delivery.resource_ref)
        else:
            delivery.last_error, delivery.next_attempt_time = _describe(reply)[:512], now + delay
    session.flush()
    promote(session, left)


def disable(session: Session, workspace_id: int, url: str, why: str, now: datetime) -> None:
    session.execute(
        update(Endpoint).where(Endpoint.workspace_id == workspace_id, Endpoint.url == url, Endpoint.enabled)
        .values(enabled=False, disabled_reason=why, disable_time=now)
    )


def exchange(
    session: Session, *, answers: Sequence[Outcome], room: int, lease: timedelta, schedule: Sequence[float]
) -> list[Attempt]:
    """One round of a worker: records `answers`, then claims up to `room` deliveries."""
    record(session, answers, schedule)
    return claim(session, room, lease) if room > 0 else []


@dataclass(frozen=True)
class Filter:
    """Which deliveries ListWebhookDeliveries shows; None or empty matches every one."""

    status: str | None = None
    event_id: str = ""
    resource_ref: str = ""
    url: str = ""
    created_after: datetime | None = None

    @property
    def scope(self) -> str:
        """What a page token is bound to, so that one is not reused with another filter."""
        after = self.created_after.isoformat() if self.created_after else ""
        return "\x1f".join((self.status or "", self.event_id, self.resource_ref, self.url, after))


def list_deliveries(
    session: Session, workspace_id: int, where: Filter, after: int | None, size: int
) -> tuple[Sequence[Delivery], int | None]:
    """A page of the workspace's deliveries, newest first."""
    query = select(Delivery).where(Delivery.workspace_id == workspace_id)
    if where.status:
        query = query.where(Delivery.status == where.status)
    for column, value in ((Delivery.event_id, where.event_id), (Delivery.resource_ref, where.resource_ref),
                          (Delivery.url, where.url)):
        if value:
            query = query.where(column == value)
    if where.created_after is not None:
        query = query.where(Delivery.create_time >= where.created_after)
    return keyset.page(session, query, Delivery.id, after, size, newest_first=True)


_AGAIN = {"status": PENDING, "attempts": 0, "last_error": "", "last_response_code": 0, "lease_time": None,
          "deliver_time": None}


def retry_one(session: Session, workspace_id: int, ref: str) -> Delivery:
    """Starts a new series of attempts of one delivery, now, whatever its status."""
    delivery = session.scalars(
        select(Delivery).where(Delivery.workspace_id == workspace_id, Delivery.ref == ref).with_for_update()
    ).one_or_none()
    if delivery is None:
        raise NotFound(f"No webhook delivery {ref!r} in this workspace.")
    for name, value in {**_AGAIN, "next_attempt_time": utcnow()}.items():
        setattr(delivery, name, value)
    session.flush()
    reorder(session, [delivery.resource_ref])
    session.refresh(delivery)
    return delivery


def retry_failed(session: Session, workspace_id: int, since: datetime, url: str) -> int:
    """Starts a new series of attempts of every FAILED delivery created at or after `since` (to `url`
    only, if given); returns how many."""
    query = update(Delivery).where(
        Delivery.workspace_id == workspace_id, Delivery.status == FAILED, Delivery.create_time >= since
    )
    if url:
        query = query.where(Delivery.url == url)
    again = list(session.execute(
        query.values(**_AGAIN, next_attempt_time=utcnow()).returning(Delivery.resource_ref)
    ).scalars())
    reorder(session, again)
    return len(again)
