"""The Agents service's tables.

`agent_credentials` has the shape a SIP proxy's auth table needs (one row
per username and domain, with HA1 digests), so the `sip_subscribers` view
of the migration can serve Kamailio's auth_db directly.
"""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..persistence.base import Base, Id, WorkspaceResource


class Agent(WorkspaceResource, Base):
    __tablename__ = "agents"
    kind = "agent"
    __table_args__ = (UniqueConstraint("workspace_id", "request_id"),)

    name: Mapped[str] = mapped_column(String(255), default="")
    username: Mapped[str] = mapped_column(String(64))
    privacy: Mapped[str] = mapped_column(String(16), default="NONE")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)

    credentials: Mapped[list[AgentCredential]] = relationship(
        back_populates="agent", cascade="all, delete-orphan", order_by="AgentCredential.id", lazy="selectin"
    )

    @property
    def domains(self) -> list[str]:
        return [c.domain for c in self.credentials]


class AgentCredential(Base):
    """SIP digest credentials of one agent in one domain; the secret itself is never stored."""

    __tablename__ = "agent_credentials"
    # A username is unique within a SIP domain, whichever workspace holds it.
    __table_args__ = (UniqueConstraint("username", "domain"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    agent_id: Mapped[int] = mapped_column(Id, ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(String(64))
    domain: Mapped[str] = mapped_column(String(253))
    ha1: Mapped[str] = mapped_column(String(32))  # MD5(username:domain:secret)
    ha1b: Mapped[str] = mapped_column(String(32))  # MD5(username@domain:domain:secret)
    ha1_sha256: Mapped[str] = mapped_column(String(64))
    ha1b_sha256: Mapped[str] = mapped_column(String(64))

    agent: Mapped[Agent] = relationship(back_populates="credentials")
