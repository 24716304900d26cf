"""Turning the outbox's events into deliveries.

The dispatcher reads the outbox after its stored position and, in the same transaction, stores the
deliveries and the new position: a crash either keeps both or neither, so every event becomes its
deliveries exactly once. The position's row is locked first, so that replicas take turns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from ..events import outbox
from ..events.models import Event
from ..persistence.base import new_ref, table_of, utcnow
from .endpoints import add_endpoints
from .models import Delivery, DispatchPosition, WebhookSettings
from .payloads import event_type

POSITION = "webhooks"
DELIVERIES = table_of(Delivery)


@dataclass(frozen=True)
class Defaults:
    """What a workspace's settings say about events whose resource names no webhook."""

    incoming_url: str = ""
    outgoing_url: str = ""
    whitelist: frozenset[str] = frozenset()

    def url_for(self, event: Event) -> str:
        url = self.incoming_url if event.direction == "INBOUND" else self.outgoing_url
        if url and self.whitelist and not self.whitelist & parties_of(event):
            return ""
        return url


def parties_of(event: Event) -> set[str]:
    """The agents and numbers an event's resource involves, as the whitelist names them."""
    return {party for party in (event.payload.get("source"), event.payload.get("destination")) if party}


def defaults_of(session: Session, workspace_ids: Iterable[int]) -> dict[int, Defaults]:
    rows = session.scalars(select(WebhookSettings).where(WebhookSettings.workspace_id.in_(set(workspace_ids))))
    return {s.workspace_id: Defaults(s.incoming_url, s.outgoing_url, frozenset(s.whitelist)) for s in rows}


def _position(session: Session) -> DispatchPosition:
    position = session.get(DispatchPosition, POSITION, with_for_update=True)
    if position is None:  # the first dispatch of the deployment; a concurrent one fails its insert and retries
        position = DispatchPosition(name=POSITION, txid=0, event_id=0)
        session.add(position)
        session.flush()
    return position


def outbox_lag(session: Session) -> list[Metric]:
    """For /metrics: how far the dispatcher is behind the outbox, and the deliveries not yet made."""
    position = session.get(DispatchPosition, POSITION)
    waiting, oldest = outbox.backlog(session, outbox.Position(position.txid, position.event_id) if position
                                     else outbox.START)
    pending = session.scalar(select(func.count()).select_from(DELIVERIES).where(DELIVERIES.c.status == "PENDING"))
    return [
        GaugeMetricFamily("voxplane_webhook_outbox_backlog", "Events stored that the webhook dispatcher has not "
                          "yet turned into deliveries.", value=waiting),
        GaugeMetricFamily("voxplane_webhook_outbox_lag_seconds", "Seconds the oldest of those events has waited "
                          "(0: none waits).", value=max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0),
        GaugeMetricFamily("voxplane_webhook_deliveries_pending", "Webhook deliveries not yet delivered nor "
                          "failed (due, waiting for a retry, or behind an earlier one of their resource).",
                          value=pending or 0),
    ]


def has_new_events(session: Session, after: outbox.Position) -> bool:
    """Whether the outbox holds final events after `after`: a read, so that an idle dispatcher takes
    no write lock to learn it."""
    return bool(outbox.read(session, after, limit=1)[0])


def dispatch(session: Session, limit: int) -> tuple[int, outbox.Position]:
    """Makes the deliveries of up to `limit` events after the stored position; returns how many events
    it read (fewer than `limit`: the outbox is drained for now) and the position it stored."""
    position = _position(session)
    events, after = outbox.read(session, outbox.Position(position.txid, position.event_id), limit=limit)
    position.txid, position.event_id = after.txid, after.id
    if not events:
        return 0, after
    defaults = defaults_of(session, {e.workspace_id for e in events if not e.webhook})
    # A resource with a delivery pending already: its new ones wait behind it (deliveries.promote).
    busy = set(session.scalars(select(Delivery.resource_ref).where(
        Delivery.resource_ref.in_({e.resource_ref for e in events}), Delivery.status == "PENDING"
    ).distinct()))
    now = utcnow()
    deliveries: list[dict[str, Any]] = []
    for event in events:
        url = event.webhook or defaults.get(event.workspace_id, Defaults()).url_for(event)
        if url:
            ready = event.resource_ref not in busy
            busy.add(event.resource_ref)
            deliveries.append({
                "ref": new_ref(), "workspace_id": event.workspace_id, "event_row_id": event.id,
                "event_id": event.ref, "event_type": event_type(event), "resource_ref": event.resource_ref,
                "sequence": event.sequence, "url": url, "status": "PENDING", "ready": ready, "attempts": 0, "last_error": "",
                "last_response_code": 0, "next_attempt_time": now, "create_time": now,
            })
    if deliveries:
        add_endpoints(session, ((d["workspace_id"], d["url"]) for d in deliveries))
        session.execute(insert(DELIVERIES), deliveries)
    return len(events), after
