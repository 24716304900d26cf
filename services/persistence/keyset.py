"""Keyset paging: a page costs the same wherever it is in the list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session


def page(session: Session, query: Select[Any], id_column: InstrumentedAttribute[int], after_id: int, size: int
         ) -> tuple[Sequence[Any], int | None]:
    """One page of `query` ordered by `id_column`, and the last id if more rows follow."""
    rows = session.scalars(query.where(id_column > after_id).order_by(id_column).limit(size + 1)).all()
    if len(rows) > size:
        rows = rows[:size]
        return rows, getattr(rows[-1], id_column.key)
    return rows, None
