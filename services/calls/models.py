"""The Calls service's tables: calls, their parties, history labels and recordings, the runners, and each
workspace's call settings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..persistence.base import Base, Id, UtcDateTime, WorkspaceResource

STATUSES = ("QUEUED", "RINGING", "IN_PROGRESS", "COMPLETED", "BUSY", "FAILED", "NO_ANSWER", "CANCELED")
ACTIVE_STATUSES = ("QUEUED", "RINGING", "IN_PROGRESS")


class Call(WorkspaceResource, Base):
    __tablename__ = "calls"
    kind = "call"
    __table_args__ = (
        UniqueConstraint("workspace_id", "request_id"),
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})", name="known_status"),
        CheckConstraint("direction IN ('INBOUND', 'OUTBOUND')", name="known_direction"),
        # History pages are keyset pages over (workspace, id), newest first, whatever the filter; each
        # exact-match filter has an index in that order, so a sparse one costs what a dense one does.
        Index("ix_calls_workspace_id_id", "workspace_id", "id"),
        Index("ix_calls_workspace_id_from_party_id", "workspace_id", "from_party", "id"),
        Index("ix_calls_workspace_id_to_party_id", "workspace_id", "to_party", "id"),
        Index("ix_calls_workspace_id_status_id", "workspace_id", "status", "id"),
        Index("ix_calls_workspace_id_direction_id", "workspace_id", "direction", "id"),
        Index("ix_calls_status", "status"),  # the running calls of every workspace (heartbeats)
    )

    from_party: Mapped[str] = mapped_column(String(512))
    to_party: Mapped[str] = mapped_column(String(512))
    caller_id: Mapped[str] = mapped_column(String(16), default="")
    device_id: Mapped[str] = mapped_column(String(32), default="")
    direction: Mapped[str] = mapped_column(String(8), default="OUTBOUND")
    status: Mapped[str] = mapped_column(String(16), default="QUEUED")
    hangup_cause: Mapped[str | None] = mapped_column(String(24))
    muted: Mapped[bool] = mapped_column(Boolean, default=False)
    on_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    recording: Mapped[bool] = mapped_column(Boolean, default=False)
    webhook: Mapped[str | None] = mapped_column(String(2048))
    timeout_seconds: Mapped[int] = mapped_column(Integer, default=30)
    call_metadata: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    answer_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    starred: Mapped[bool] = mapped_column(Boolean, default=False)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    read: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(String(1000), default="")
    # The CallRunner (a running Calls process) whose gateway carries the call, while it runs.
    runner_id: Mapped[str | None] = mapped_column(String(32))
    # The sequence of the call's last event (events.py): every change locks the row, so it hands out the next.
    event_sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    participants: Mapped[list[CallParticipant]] = relationship(
        cascade="all, delete-orphan", order_by="CallParticipant.id", lazy="selectin"
    )
    labels: Mapped[list[CallLabel]] = relationship(
        cascade="all, delete-orphan", order_by="CallLabel.label", lazy="selectin"
    )


class CallParticipant(Base):
    __tablename__ = "call_participants"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    call_id: Mapped[int] = mapped_column(Id, ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(String(512))
    muted: Mapped[bool] = mapped_column(Boolean, default=False)
    on_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[bool] = mapped_column(Boolean, default=False)


class CallLabel(Base):
    """One history label of a call; a table of its own so the label filter is an indexed lookup."""

    __tablename__ = "call_labels"
    # (label, call_id): the label filter walks it newest call first.
    __table_args__ = (UniqueConstraint("call_id", "label"), Index("ix_call_labels_label_call_id", "label", "call_id"))

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    call_id: Mapped[int] = mapped_column(Id, ForeignKey("calls.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(64))


class CallRecording(Base):
    """A call's recording (the SIP gateway's; README, "The SIP gateway"): the WAV file itself, in the
    database, so that every replica serves it and it goes with its call (DeleteCallRecords, a workspace's
    deletion). Each stop of recording replaces it with the WAV of all that was recorded so far."""

    __tablename__ = "call_recordings"

    call_id: Mapped[int] = mapped_column(Id, ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(64))
    duration_ms: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    sample_rate: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    update_time: Mapped[datetime] = mapped_column(UtcDateTime)


class CallRunner(Base):
    """A running Calls process. It stamps `heartbeat_time` every few seconds; the calls of a runner that
    stopped stamping can no longer be controlled, and any other runner ends them."""

    __tablename__ = "call_runners"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    start_time: Mapped[datetime] = mapped_column(UtcDateTime)
    heartbeat_time: Mapped[datetime] = mapped_column(UtcDateTime)


class CallSettings(Base):
    """A workspace's toll-fraud guards (guards.py); a workspace without a row has the defaults."""

    __tablename__ = "call_settings"

    workspace_id: Mapped[int] = mapped_column(Id, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    # ISO 3166-1 alpha-2 codes, sorted; empty: every country.
    allowed_countries: Mapped[list[str]] = mapped_column(JSON, default=list)
    # guards.COSTLY_TYPES names (CostlyNumberType without its prefix), sorted; empty: none.
    allowed_costly_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    # 0: the deployment's VOXPLANE_CALLS_MAX_CONCURRENT.
    max_concurrent_calls: Mapped[int] = mapped_column(Integer, default=0)
    update_time: Mapped[datetime] = mapped_column(UtcDateTime)


class SipDialog(Base):
    """A SIP dialog of a live call's leg, established by the SIP gateway at `gateway` (its SIP address): what
    that gateway needs to send the leg's BYE when it starts again after being killed (sip.py). Written when
    the leg is established, deleted when the call ends."""

    __tablename__ = "sip_dialogs"

    gateway: Mapped[str] = mapped_column(String(300), primary_key=True)  # host:port it listens on
    call_ref: Mapped[str] = mapped_column(String(32), primary_key=True)  # also the call's id at rtpengine
    leg: Mapped[str] = mapped_column(String(1), primary_key=True)  # A or B
    call_id: Mapped[str] = mapped_column(String(255))
    local_uri: Mapped[str] = mapped_column(String(512))  # From of our requests, without its tag
    local_tag: Mapped[str] = mapped_column(String(128))
    remote_uri: Mapped[str] = mapped_column(String(512))  # To of our requests, without its tag
    remote_tag: Mapped[str] = mapped_column(String(128))
    remote_target: Mapped[str] = mapped_column(String(512))  # the Request-URI: the far end's Contact
    route_set: Mapped[list[str]] = mapped_column(JSON)  # Route header values, in order
    next_hop: Mapped[str] = mapped_column(String(300))  # host:port the request is sent to
    contact: Mapped[str] = mapped_column(String(512))  # our Contact
    cseq: Mapped[int] = mapped_column(Integer)  # the CSeq of our next request in the dialog
