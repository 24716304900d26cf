"""Rules of endpoints: a workspace's URLs, each enabled or disabled and with its payload format."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..persistence.base import utcnow
from .models import Endpoint
from .payloads import STANDARD

EndpointKey = tuple[int, str]  # (workspace id, URL)


def endpoints_of(session: Session, keys: Iterable[EndpointKey]) -> dict[EndpointKey, Endpoint]:
    """The stored endpoints among `keys`; a URL never configured nor delivered to is missing."""
    wanted = set(keys)
    if not wanted:
        return {}
    by_workspace: dict[int, set[str]] = {}
    for workspace_id, url in wanted:
        by_workspace.setdefault(workspace_id, set()).add(url)
    query = select(Endpoint).where(
        or_(*(
            (Endpoint.workspace_id == workspace_id) & Endpoint.url.in_(urls)
            for workspace_id, urls in by_workspace.items()
        ))
    )
    return {(e.workspace_id, e.url): e for e in session.scalars(query)}


def list_endpoints(session: Session, workspace_id: int, after: str | None, size: int) -> tuple[list[Endpoint], str | None]:
    """A page of the workspace's endpoints, disabled ones first, then in the order they were made.
    The key is `<enabled 0/1>:<id>` of the last one served."""
    query = select(Endpoint).where(Endpoint.workspace_id == workspace_id)
    if after is not None:
        enabled, _, last = after.partition(":")
        later_in_group = Endpoint.id > int(last)
        query = query.where(
            Endpoint.enabled.is_(True) & later_in_group if enabled == "1"
            else or_(Endpoint.enabled.is_(True), later_in_group)
        )
    rows = list(session.scalars(query.order_by(Endpoint.enabled, Endpoint.id).limit(size + 1)))
    if len(rows) <= size:
        return rows, None
    rows = rows[:size]
    return rows, f"{int(rows[-1].enabled)}:{rows[-1].id}"


def update_endpoint(
    session: Session, workspace_id: int, url: str, *, enabled: bool | None, payload_format: str | None
) -> Endpoint:
    """Configures the workspace's endpoint for `url`, making it if needed; None leaves a field alone.
    Disabling by request records why; enabling clears it."""
    add_endpoints(session, [(workspace_id, url)])
    endpoint = session.scalars(
        select(Endpoint).where(Endpoint.workspace_id == workspace_id, Endpoint.url == url).with_for_update()
    ).one()
    if enabled is not None and enabled != endpoint.enabled:
        endpoint.enabled = enabled
        endpoint.disabled_reason = "" if enabled else "disabled by request"
        endpoint.disable_time = None if enabled else utcnow()
    if payload_format is not None:
        endpoint.payload_format = payload_format
    session.flush()
    return endpoint


def add_endpoints(session: Session, keys: Iterable[EndpointKey]) -> None:
    """Stores an enabled STANDARD endpoint for each (workspace id, URL) that has none yet (a concurrent
    transaction's included)."""
    rows = [
        {"workspace_id": w, "url": u, "enabled": True, "disabled_reason": "", "payload_format": STANDARD}
        for w, u in sorted(set(keys))
    ]
    if rows:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.execute(dialect.insert(Endpoint).on_conflict_do_nothing(index_elements=["workspace_id", "url"]), rows)
