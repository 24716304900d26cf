"""The Messaging service's tables: messages (SMS and faxes), their status changes, fax documents,
faxlines, opt-outs, per-workspace settings, and the simulated carrier's record of hand-offs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..persistence.base import Base, Id, UtcDateTime, WorkspaceResource, utcnow

STATUSES = (
    "QUEUED", "SCHEDULED", "SENDING", "SENT", "DELIVERED", "UNDELIVERED", "FAILED", "CANCELED", "RECEIVED", "PENDING",
)
# Waiting for the worker (the ones it claims), and under way: neither can be deleted.
WAITING_STATUSES = ("QUEUED", "SCHEDULED", "PENDING")
UNDER_WAY_STATUSES = (*WAITING_STATUSES, "SENDING")
MAX_BODY = 1600


class Message(WorkspaceResource, Base):
    """An SMS or a fax, sent or received. `due_time` is when the worker next has something to do with it
    (send it, retry it, take it back from a worker that stopped); NULL once nothing is left to do."""

    __tablename__ = "messages"
    kind = "message"
    __table_args__ = (
        UniqueConstraint("workspace_id", "request_id"),
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})", name="known_status"),
        CheckConstraint("direction IN ('INBOUND', 'OUTBOUND')", name="known_direction"),
        CheckConstraint("type IN ('SMS', 'FAX')", name="known_type"),
        # History pages are keyset pages over (workspace, id), newest first; each exact-match filter has an
        # index in that order, so a sparse filter costs what a dense one does.
        Index("ix_messages_workspace_id_id", "workspace_id", "id"),
        Index("ix_messages_workspace_id_source_id", "workspace_id", "source", "id"),
        Index("ix_messages_workspace_id_destination_id", "workspace_id", "destination", "id"),
        Index("ix_messages_workspace_id_status_id", "workspace_id", "status", "id"),
        Index("ix_messages_workspace_id_type_id", "workspace_id", "type", "id"),
        Index("ix_messages_workspace_id_direction_id", "workspace_id", "direction", "id"),
        Index("ix_messages_due_time", "due_time"),  # the worker's queue
    )

    type: Mapped[str] = mapped_column(String(8), default="SMS")
    direction: Mapped[str] = mapped_column(String(8), default="OUTBOUND")
    source: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(String(MAX_BODY), default="")
    encoding: Mapped[str] = mapped_column(String(8), default="")  # GSM7, UCS2; "" for a fax
    num_segments: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))
    failure_reason: Mapped[str] = mapped_column(String(255), default="")
    webhook: Mapped[str | None] = mapped_column(String(2048))
    send_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    due_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The worker whose claim it is while SENDING (its lease runs to due_time).
    claimed_by: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    event_sequence: Mapped[int] = mapped_column(Integer, default=0)
    # Fax only.
    faxline_ref: Mapped[str] = mapped_column(String(32), default="")
    filename: Mapped[str] = mapped_column(String(255), default="")
    page_count: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    fax_failure: Mapped[str] = mapped_column(String(24), default="")  # BUSY, NO_ANSWER, ...

    changes: Mapped[list[StatusChange]] = relationship(
        cascade="all, delete-orphan", order_by="StatusChange.id", lazy="selectin", passive_deletes=True
    )


class StatusChange(Base):
    """One status a message took, and when."""

    __tablename__ = "message_status_changes"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(Id, ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    time: Mapped[datetime] = mapped_column(UtcDateTime)


class FaxDocument(Base):
    """The PDF of a fax, kept apart so that lists and exports never read it."""

    __tablename__ = "fax_documents"

    message_id: Mapped[int] = mapped_column(Id, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Faxline(WorkspaceResource, Base):
    __tablename__ = "faxlines"
    kind = "faxline"
    __table_args__ = (UniqueConstraint("workspace_id", "request_id"), UniqueConstraint("workspace_id", "number"))

    number: Mapped[str] = mapped_column(String(16))
    alias: Mapped[str] = mapped_column(String(255), default="")
    tagline: Mapped[str] = mapped_column(String(64), default="")
    can_send: Mapped[bool] = mapped_column(default=True)
    can_receive: Mapped[bool] = mapped_column(default=True)


class OptOut(Base):
    """`recipient` texted STOP to `sender` (a number of the workspace): no more messages from it to them."""

    __tablename__ = "message_opt_outs"
    __table_args__ = (UniqueConstraint("workspace_id", "sender", "recipient"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(Id, ForeignKey("workspaces.id", ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(16))
    create_time: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class MessagingSettings(Base):
    __tablename__ = "messaging_settings"

    workspace_id: Mapped[int] = mapped_column(Id, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    help_reply: Mapped[str] = mapped_column(String(MAX_BODY), default="")
    update_time: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class CarrierHandoff(Base):
    """The simulated carrier's own memory of what it was handed, by message ref: a hand-off of a ref it
    has is a repeat (counted in `offers`), answered as the first one was and sent no second time."""

    __tablename__ = "carrier_handoffs"

    message_ref: Mapped[str] = mapped_column(String(32), primary_key=True)
    carrier_ref: Mapped[str] = mapped_column(String(32))
    offers: Mapped[int] = mapped_column(Integer, default=1)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
