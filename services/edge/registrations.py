"""Agents' live registrations at the edge: Kamailio keeps them in `location` alone (usrloc db_mode 3),
so removing the rows, in the transaction that removes or disables an agent, unregisters it at once."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, tuple_
from sqlalchemy.orm import Session

from .models import location


def forget(session: Session, aors: Iterable[tuple[str, str]]) -> None:
    """Drops every contact registered for these (username, domain) AORs."""
    pairs = list(aors)
    if pairs:
        session.execute(delete(location).where(tuple_(location.c.username, location.c.domain).in_(pairs)))
