"""Workspaces, their API keys, and the deployment's own secrets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, Id, UtcDateTime, new_ref, utcnow


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(32), unique=True, default=new_ref)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ApiKey(Base):
    """A key is shown once; only its SHA-256 is kept (keys are random, so no slow hash is needed)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    # Public part of the key, used to list and revoke it.
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    workspace_id: Mapped[int] = mapped_column(Id, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    create_time: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoke_time: Mapped[datetime | None] = mapped_column(UtcDateTime)

    workspace: Mapped[Workspace] = relationship()


class DeploymentSecret(Base):
    """Random secrets made once per deployment (e.g. the page-token signing key), shared by replicas."""

    __tablename__ = "deployment_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class RateWindow(Base):
    """What a workspace used of one of its limits (`kind`) in the current window: one row per workspace
    and limit, reset by the first use in a later window. The shared count replicas take their tokens
    from (core/ratelimits.py)."""

    __tablename__ = "rate_windows"

    workspace_id: Mapped[int] = mapped_column(Id, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    # The window's start, in whole seconds since the epoch.
    window_start: Mapped[int] = mapped_column(BigInteger)
    used: Mapped[int] = mapped_column(BigInteger)


class WorkspaceLimit(Base):
    """A workspace's own value of one of its limits (`kind`, as in rate_windows), set by an operator
    (`voxplane workspaces limits`) in place of the deployment's default; 0 is no limit. No row: the
    default (core/ratelimits.py)."""

    __tablename__ = "workspace_limits"

    workspace_id: Mapped[int] = mapped_column(Id, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
