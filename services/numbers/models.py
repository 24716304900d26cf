"""The Numbers service's table."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..persistence.base import Base, WorkspaceResource


class Number(WorkspaceResource, Base):
    __tablename__ = "numbers"
    __table_args__ = (
        UniqueConstraint("workspace_id", "request_id"),
        # Exactly one routing: an AOR, or an application (webhook and/or app ref).
        CheckConstraint(
            "(aor_link IS NULL) <> (ingress_webhook IS NULL AND ingress_app_ref IS NULL)",
            name="one_routing",
        ),
    )

    # One owner at a time across the deployment: unique without the workspace.
    e164_number: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    provider_ref: Mapped[str] = mapped_column(String(128))
    aor_link: Mapped[str | None] = mapped_column(String(512))
    ingress_webhook: Mapped[str | None] = mapped_column(String(2048))
    ingress_app_ref: Mapped[str | None] = mapped_column(String(128))
