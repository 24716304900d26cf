"""Operator tasks on workspaces and API keys (the `voxplane workspaces|keys` commands)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..persistence.base import utcnow
from ..persistence.tenancy import ApiKey, Workspace
from .auth import Role, hash_key, new_key
from .errors import AlreadyExists, NotFound


def create_workspace(session: Session, name: str) -> Workspace:
    workspace = Workspace(name=name)
    session.add(workspace)
    try:
        session.flush()
    except IntegrityError:
        raise AlreadyExists(f"A workspace named {name!r} already exists.") from None
    return workspace


def list_workspaces(session: Session) -> Sequence[Workspace]:
    return session.scalars(select(Workspace).order_by(Workspace.id)).all()


def find_workspace(session: Session, name: str) -> Workspace:
    workspace = session.scalar(select(Workspace).where(Workspace.name == name))
    if workspace is None:
        raise NotFound(f"No workspace is named {name!r}.")
    return workspace


def create_key(session: Session, workspace: Workspace, role: Role) -> str:
    """Stores a new key's hash and returns the key itself, which is never stored."""
    key_id, api_key = new_key()
    session.add(ApiKey(key_id=key_id, key_hash=hash_key(api_key), workspace_id=workspace.id, role=role.value))
    session.flush()
    return api_key


def list_keys(session: Session, workspace_name: str | None = None) -> Sequence[ApiKey]:
    query = select(ApiKey).join(ApiKey.workspace).order_by(ApiKey.id)
    if workspace_name:
        query = query.where(Workspace.name == workspace_name)
    return session.scalars(query).all()


def key_is_active(session: Session, api_key: str) -> bool:
    return session.scalar(
        select(ApiKey.id).where(ApiKey.key_hash == hash_key(api_key), ApiKey.revoke_time.is_(None))
    ) is not None


def revoke_key(session: Session, key_id: str) -> None:
    key = session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
    if key is None:
        raise NotFound(f"No API key has the id {key_id!r}.")
    if key.revoke_time is None:
        key.revoke_time = utcnow()


def new_service_key(session: Session, workspace_name: str) -> str:
    """A new `service` key of the workspace `workspace_name`, made if missing: what a service that asks
    another about any workspace (Messaging asking Numbers where an SMS goes) makes for itself."""
    try:
        workspace = find_workspace(session, workspace_name)
    except NotFound:
        try:
            with session.begin_nested():
                workspace = create_workspace(session, workspace_name)
        except AlreadyExists:  # another process made it meanwhile
            workspace = find_workspace(session, workspace_name)
    return create_key(session, workspace, Role.SERVICE)
