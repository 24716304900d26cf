"""The outbox: every event a service stores, in the transaction of the change it reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..persistence.base import Base, Id, UtcDateTime, new_ref, utcnow


class Event(Base):
    """One change of one resource (a call now, a message next). Streams and webhook deliveries both read
    these rows in (`txid`, `id`) order; see `outbox` for why that order is safe to resume from."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("topic", "resource_ref", "sequence"),
        Index("ix_events_workspace_id_txid_id", "workspace_id", "txid", "id"),  # a workspace's stream
        Index("ix_events_txid_id", "txid", "id"),  # every workspace's: the webhook dispatcher
        Index("ix_events_create_time", "create_time"),  # retention
        # Cursors and the webhook dispatcher's position are ids: SQLite must never give a pruned id out
        # again (without AUTOINCREMENT it reuses the ids above the highest row left).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    # The event_id callers see: the same on every stream and every delivery attempt.
    ref: Mapped[str] = mapped_column(String(32), unique=True, default=new_ref)
    workspace_id: Mapped[int] = mapped_column(Id, ForeignKey("workspaces.id", ondelete="CASCADE"))
    topic: Mapped[str] = mapped_column(String(16))  # "call", "message"
    resource_ref: Mapped[str] = mapped_column(String(32))
    sequence: Mapped[int] = mapped_column(Integer)  # 1, 2, 3… per resource
    type: Mapped[str] = mapped_column(String(32))  # the event type's proto name without prefix: "NEW_CALL"
    network_time: Mapped[datetime] = mapped_column(UtcDateTime)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # PostgreSQL: the writing transaction's id; SQLite, whose writers take turns: 0.
    txid: Mapped[int] = mapped_column(BigInteger, default=0)
    # Where the resource said its events go when this one was stored; None: the workspace's default.
    webhook: Mapped[str | None] = mapped_column(String(2048))
    direction: Mapped[str] = mapped_column(String(8))  # "INBOUND" / "OUTBOUND": which default URL
    # The rest of the event's fields, as the proto's JSON names them.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
