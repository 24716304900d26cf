"""The Webhooks service's tables: signing secrets, settings, endpoints, deliveries, and how far the
dispatcher has read the outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..persistence.base import Base, Id, UtcDateTime, new_ref, utcnow

URL_LENGTH = 2048


class SigningKey(Base):
    """A workspace's signing secret, and while a rotation lasts the previous one. Both are stored
    sealed (AES-GCM under a deployment secret, see `vault`): a copy of the database alone does not
    let anyone forge deliveries."""

    __tablename__ = "webhook_signing_keys"

    workspace_id: Mapped[int] = mapped_column(Id, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    previous_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_expire_time: Mapped[datetime | None] = mapped_column(UtcDateTime)


class WebhookSettings(Base):
    """A workspace's default URLs, whitelist and log switch; no row: none set."""

    __tablename__ = "webhook_settings"

    workspace_id: Mapped[int] = mapped_column(Id, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    incoming_url: Mapped[str] = mapped_column(String(URL_LENGTH), default="")
    outgoing_url: Mapped[str] = mapped_column(String(URL_LENGTH), default="")
    whitelist: Mapped[list[str]] = mapped_column(JSON, default=list)
    keep_delivery_log: Mapped[bool] = mapped_column(Boolean, default=False)
    update_time: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Endpoint(Base):
    """A URL of a workspace: made when a delivery first goes there, or by UpdateWebhookEndpoint."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (UniqueConstraint("workspace_id", "url"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(Id, ForeignKey("workspaces.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(URL_LENGTH))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str] = mapped_column(String(256), default="")
    disable_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    payload_format: Mapped[str] = mapped_column(String(16), default="STANDARD")  # payloads.FORMATS


class Delivery(Base):
    """One event posted to one URL, over one or more attempts. The body is rendered from the event at
    each attempt (the outbox keeps events longer than the retry window)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_row_id", "url"),  # one delivery per event and URL, whoever dispatched it
        Index("ix_webhook_deliveries_status_ready_next_attempt_time", "status", "ready", "next_attempt_time"),  # due
        Index("ix_webhook_deliveries_resource_ref_sequence", "resource_ref", "sequence"),  # per-resource order
        Index("ix_webhook_deliveries_workspace_id_id", "workspace_id", "id"),  # the list, newest first
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(32), unique=True, default=new_ref)
    workspace_id: Mapped[int] = mapped_column(Id, ForeignKey("workspaces.id", ondelete="CASCADE"))
    event_row_id: Mapped[int] = mapped_column(Id, ForeignKey("events.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(32))  # the event's ref: every attempt's webhook-id
    event_type: Mapped[str] = mapped_column(String(48))  # "call.answer"
    resource_ref: Mapped[str] = mapped_column(String(32))
    sequence: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(String(URL_LENGTH))
    status: Mapped[str] = mapped_column(String(16), default="PENDING")  # PENDING, DELIVERED, FAILED
    # The oldest PENDING one of its resource: the only one of them that may be sent (deliveries.promote).
    ready: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # of the current series (a retry starts one)
    last_error: Mapped[str] = mapped_column(String(512), default="")
    last_response_code: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # A worker sending it holds it until then, so that no other sends it meanwhile.
    lease_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    deliver_time: Mapped[datetime | None] = mapped_column(UtcDateTime)


class DispatchPosition(Base):
    """How far the dispatcher has turned the outbox into deliveries (an outbox Position); one row,
    locked by the dispatching transaction, so that replicas take turns."""

    __tablename__ = "webhook_dispatch"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger, default=0)
    event_id: Mapped[int] = mapped_column(BigInteger, default=0)


class Steering(Base):
    """What came of the steering POST of one event to one URL (Calls' steering), kept beside the event
    because the event's delivery is made later, by the dispatcher; ListWebhookDeliveries joins it to
    the delivery of the same event and URL. It goes with its event."""

    __tablename__ = "webhook_steerings"

    event_row_id: Mapped[int] = mapped_column(Id, ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(String(URL_LENGTH), primary_key=True)
    result: Mapped[str] = mapped_column(String(16))  # steering.RESULTS
    instruction: Mapped[str] = mapped_column(String(1024), default="")  # JSON, when APPLIED
    error: Mapped[str] = mapped_column(String(512), default="")
    response_code: Mapped[int] = mapped_column(Integer, default=0)
    request_time: Mapped[datetime] = mapped_column(UtcDateTime)
    outcome_time: Mapped[datetime] = mapped_column(UtcDateTime)
