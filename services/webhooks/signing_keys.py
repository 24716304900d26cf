"""Rules of a workspace's signing secret: one per workspace, shown once, rotated with a 24-hour
overlap during which deliveries carry both signatures."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core.errors import AlreadyExists, FailedPrecondition, NotFound
from ..persistence.base import utcnow
from .models import SigningKey
from .signing import new_secret
from .vault import Vault

ROTATION_OVERLAP = timedelta(hours=24)
NO_SECRET = (
    "the workspace has no signing secret: create one with CreateSigningSecret"
    " (`voxplane webhooks secret create`); deliveries wait until then"
)


@dataclass(frozen=True)
class Described:
    """A signing secret as the API shows it: `secret` only right after it was made."""

    create_time: datetime
    previous_expire_time: datetime | None
    secret: str = ""


def _describe(key: SigningKey, now: datetime, secret: str = "") -> Described:
    expiry = key.previous_expire_time
    return Described(key.create_time, expiry if expiry is not None and expiry > now else None, secret)


def create(session: Session, workspace_id: int) -> Described:
    if session.get(SigningKey, workspace_id) is not None:
        raise AlreadyExists("The workspace has a signing secret already; rotate it to get a new one.")
    secret = new_secret()
    key = SigningKey(workspace_id=workspace_id, sealed=Vault.of(session).seal(workspace_id, secret), create_time=utcnow())
    session.add(key)
    session.flush()
    return _describe(key, key.create_time, secret)


def rotate(session: Session, workspace_id: int) -> Described:
    key = session.get(SigningKey, workspace_id, with_for_update=True)
    if key is None:
        raise FailedPrecondition("The workspace has no signing secret to rotate; create one first.")
    now, secret = utcnow(), new_secret()
    key.previous_sealed, key.previous_expire_time = key.sealed, now + ROTATION_OVERLAP
    key.sealed, key.create_time = Vault.of(session).seal(workspace_id, secret), now
    session.flush()
    return _describe(key, now, secret)


def describe(session: Session, workspace_id: int) -> Described:
    key = session.get(SigningKey, workspace_id)
    if key is None:
        raise NotFound("The workspace has no signing secret; create one with CreateSigningSecret.")
    return _describe(key, utcnow())


def valid_secrets(session: Session, workspace_ids: Iterable[int]) -> dict[int, list[str]]:
    """The secrets each workspace's deliveries are signed with now: the current one, and the previous
    one while its rotation's overlap lasts. A workspace without a secret is missing."""
    wanted = set(workspace_ids)
    if not wanted:
        return {}
    vault, now = Vault.of(session), utcnow()
    found: dict[int, list[str]] = {}
    for key in session.scalars(select(SigningKey).where(SigningKey.workspace_id.in_(wanted))):
        secrets = [vault.open(key.workspace_id, key.sealed)]
        if key.previous_sealed is not None and key.previous_expire_time is not None and key.previous_expire_time > now:
            secrets.append(vault.open(key.workspace_id, key.previous_sealed))
        found[key.workspace_id] = secrets
    return found
