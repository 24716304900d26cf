"""The Numbers service's tables: workspace numbers, their subscriber and emergency
address, and the deployment's inventory."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..persistence.base import Base, Id, UtcDateTime, WorkspaceResource, utcnow

STATES = ("RESERVED", "ACTIVE", "SUSPENDED", "PORTING_IN", "RELEASED")


class Number(WorkspaceResource, Base):
    __tablename__ = "numbers"
    kind = "number"
    __table_args__ = (
        UniqueConstraint("workspace_id", "request_id"),
        # At most one routing: an AOR, an application's webhook, or a SIP forward.
        CheckConstraint(
            "(CASE WHEN aor_link IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN ingress_webhook IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN forward_sip_to IS NULL THEN 0 ELSE 1 END) <= 1",
            name="one_routing",
        ),
        CheckConstraint(f"state IN ({', '.join(repr(s) for s in STATES)})", name="known_state"),
        CheckConstraint("state <> 'RESERVED' OR reserve_expire_time IS NOT NULL", name="reservation_expires"),
        CheckConstraint("state <> 'RELEASED' OR release_time IS NOT NULL", name="release_has_time"),
        # ListNumbers pages by (workspace, id); its exact-match filters each have an index in that order.
        Index("ix_numbers_workspace_id_state_id", "workspace_id", "state", "id"),
        Index("ix_numbers_workspace_id_provider_ref_id", "workspace_id", "provider_ref", "id"),
        Index("ix_numbers_workspace_id_aor_link_id", "workspace_id", "aor_link", "id"),
    )

    # One holder at a time across the deployment: unique without the workspace.
    e164_number: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    provider_ref: Mapped[str] = mapped_column(String(128))
    aor_link: Mapped[str | None] = mapped_column(String(512))
    ingress_webhook: Mapped[str | None] = mapped_column(String(2048))
    forward_sip_to: Mapped[str | None] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(16), default="ACTIVE", server_default="ACTIVE")
    reserve_expire_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    release_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    from_inventory: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    recording_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    caller_id_prefix: Mapped[str] = mapped_column(String(16), default="", server_default="")
    caller_id_passthrough: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    context: Mapped[str] = mapped_column(String(16), default="INCOMING", server_default="INCOMING")
    emergency_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Where Messaging posts the SMS this number receives; "" the workspace's default.
    messaging_webhook: Mapped[str] = mapped_column(String(2048), default="", server_default="")

    subscriber: Mapped[Subscriber | None] = relationship(cascade="all, delete-orphan", lazy="selectin")
    emergency_address: Mapped[EmergencyAddress | None] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )


class Subscriber(Base):
    """Who a number is registered to (UK PBX API), with where its validation stands."""

    __tablename__ = "number_subscribers"

    number_id: Mapped[int] = mapped_column(Id, ForeignKey("numbers.id", ondelete="CASCADE"), primary_key=True)
    first_name: Mapped[str] = mapped_column(String(128), default="")
    name: Mapped[str] = mapped_column(String(255))
    address1: Mapped[str] = mapped_column(String(255))
    address2: Mapped[str] = mapped_column(String(255), default="")
    address3: Mapped[str] = mapped_column(String(255), default="")
    address4: Mapped[str] = mapped_column(String(255), default="")
    postcode: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24))
    rejection_reason: Mapped[str] = mapped_column(String(512), default="")
    update_time: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class EmergencyAddress(Base):
    """The civic address emergency services get for calls from a number, and what local checks found."""

    __tablename__ = "number_emergency_addresses"

    number_id: Mapped[int] = mapped_column(Id, ForeignKey("numbers.id", ondelete="CASCADE"), primary_key=True)
    street_address: Mapped[str] = mapped_column(String(255))
    extended_address: Mapped[str] = mapped_column(String(255), default="")
    locality: Mapped[str] = mapped_column(String(128))
    region: Mapped[str] = mapped_column(String(128), default="")
    postal_code: Mapped[str] = mapped_column(String(16))
    country: Mapped[str] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(8))  # VALID or INVALID
    problems: Mapped[list[str]] = mapped_column(JSON, default=list)


class InventoryNumber(Base):
    """A number the deployment can hand out. It is available while no workspace holds a live Number for it."""

    __tablename__ = "inventory_numbers"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    e164_number: Mapped[str] = mapped_column(String(16), unique=True)
    provider_ref: Mapped[str] = mapped_column(String(128))
    region_code: Mapped[str] = mapped_column(String(3))
    # Country code and area/network code in E.164 form, e.g. "+441224": what prefixes are listed by.
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
