"""Rules of endpoints: a workspace's URLs, each enabled or disabled and with its payload format."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .models import Endpoint

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
