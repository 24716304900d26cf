"""Who is calling: API keys to a workspace and a role, and what each role may do."""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

from sqlalchemy import bindparam, select, true

from ..persistence.db import AnySelect, Database
from ..persistence.tenancy import ApiKey, Workspace
from .errors import PermissionDenied, Unauthenticated

KEY_PREFIX = "vxp_"


class Role(str, enum.Enum):
    ADMIN = "admin"
    MEMBER = "member"
    READER = "reader"
    # Other services of the platform: a member that may also look up any workspace's routing.
    SERVICE = "service"
    # Runs the deployment: an admin of its workspace that may also manage the number
    # inventory and review any workspace's subscriber details.
    OPERATOR = "operator"


class Access(enum.Enum):
    READ = "read"
    WRITE = "write"
    OPERATE = "operate"  # deployment-wide operations


@dataclass(frozen=True)
class Caller:
    key_id: str
    role: Role
    workspace_id: int
    workspace_ref: str

    @property
    def sees_every_workspace_routing(self) -> bool:
        return self.role is Role.SERVICE


def new_key() -> tuple[str, str]:
    """A fresh (key_id, api_key); the key embeds its public id for listing and revoking."""
    key_id = secrets.token_hex(4)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(24)}"


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The API key of the `authorization: Bearer <key>` metadata; "" when there is none.
    Raises Unauthenticated for authorization metadata of another scheme, or of none (a bare key)."""
    for name, value in metadata or ():
        if name == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
            raise Unauthenticated(
                "The authorization metadata has no Bearer scheme: send 'authorization: Bearer <api key>'."
            )
    return ""


# Checked on every call, so a revoked key stops working at once; a raw lookup keeps that cheap.
_KEY_LOOKUP = (
    select(ApiKey.key_id, ApiKey.role, Workspace.id, Workspace.ref)
    .join(Workspace, Workspace.id == ApiKey.workspace_id)
    .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoke_time.is_(None))
)


Row: TypeAlias = tuple[Any, ...]
_KEY_COLUMNS = len(_KEY_LOOKUP.selected_columns)
_KEYED: dict[int, AnySelect] = {}


def _keyed(statement: AnySelect) -> AnySelect:
    """`statement` asked in the key lookup's round trip: the key's columns, then the statement's first row
    (NULLs when it finds none). Built once per statement, as lookups are compiled once."""
    found = _KEYED.get(id(statement))
    if found is None:
        key, along = _KEY_LOOKUP.subquery("caller_key"), statement.limit(1).subquery("along")
        found = _KEYED[id(statement)] = select(*key.c, *along.c).select_from(key.outerjoin(along, true()))
    return found


@dataclass(frozen=True)
class Along:
    """A lookup answered in the API key's round trip (`authenticate_along`): the hot path's second
    question costs no round trip of its own."""

    statement: AnySelect  # a module-level constant, as every lookup
    values: dict[str, object]


async def authenticate(db: Database, api_key: str, access: Access) -> Caller:
    """The caller behind `api_key`, if it may make a call needing `access`."""
    return _allowed(await db.lookup(_KEY_LOOKUP, key_hash=_hash_of(api_key)), access)


async def authenticate_along(db: Database, api_key: str, access: Access, along: Along) -> tuple[Caller, Row | None]:
    """`authenticate`, and the first row `along` finds (None: none), in one round trip."""
    row = await db.lookup(_keyed(along.statement), key_hash=_hash_of(api_key), **along.values)
    caller = _allowed(row, access)
    assert row is not None  # else refused above
    rest = row[_KEY_COLUMNS:]
    return caller, None if all(value is None for value in rest) else rest


def _hash_of(api_key: str) -> str:
    if not api_key:
        raise Unauthenticated("Missing API key: send the metadata 'authorization: Bearer <api key>'.")
    return hash_key(api_key)


def _allowed(row: Row | None, access: Access) -> Caller:
    if row is None:
        raise Unauthenticated("The API key is unknown or revoked.")
    caller = Caller(key_id=row[0], role=Role(row[1]), workspace_id=row[2], workspace_ref=row[3])
    if access is Access.WRITE and caller.role is Role.READER:
        raise PermissionDenied(f"The API key {caller.key_id} has the reader role, which cannot make changes.")
    if access is Access.OPERATE and caller.role is not Role.OPERATOR:
        raise PermissionDenied(
            f"The API key {caller.key_id} has the {caller.role.value} role; this needs an operator key."
        )
    return caller
