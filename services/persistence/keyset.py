"""Keyset paging: a page costs the same wherever it is in the list.

A page is the rows after a key (an id, an E.164 number…) in the order of one unique column, fetched
one row longer than asked: that extra row says whether more follow, and is not served.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import BindParameter, ColumnElement, bindparam
from sqlalchemy.orm import InstrumentedAttribute, Session

from .db import AnySelect

K = TypeVar("K")
Row = TypeVar("Row")


def window(query: AnySelect, column: InstrumentedAttribute[K] | ColumnElement[K], after: K | ColumnElement[K] | None,
           size: int, *, newest_first: bool = False) -> AnySelect:
    """`query` limited to the page after `after` (None: from the start; a bound parameter for a statement
    built once), in `column`'s order (descending with `newest_first`), with one row more than `size`."""
    if after is not None:
        query = query.where(column < after if newest_first else column > after)
    return query.order_by(column.desc() if newest_first else column).limit(size + 1)


@dataclass(frozen=True)
class Shape:
    """What a list's page statements are built once for, with every value a bound parameter: which of
    its filters are set, whether the page continues after a key (bound as "after"), and its size. A page
    then costs its queries and rows, not building and cache-keying a dozen SQL expressions each time."""

    filters: frozenset[str]
    continues: bool
    size: int

    @property
    def after(self) -> BindParameter[Any] | None:
        """The key a continued page starts after, for `window`."""
        return bindparam("after") if self.continues else None


def shape_of(values: Mapping[str, Any], after: object | None, size: int) -> Shape:
    """The shape of a page whose set filters are `values` (name: value, unset ones left out)."""
    return Shape(frozenset(values), after is not None, size)


def cut(rows: Sequence[Row], size: int, key: Callable[[Row], K]) -> tuple[Sequence[Row], K | None]:
    """The page of a `window`'s rows, and the key of its last row if more rows follow (else None)."""
    if len(rows) > size:
        rows = rows[:size]
        return rows, key(rows[-1])
    return rows, None


def page(session: Session, query: AnySelect, column: InstrumentedAttribute[K], after: K | None, size: int, *,
         newest_first: bool = False) -> tuple[Sequence[Any], K | None]:
    """One page of the ORM objects `query` selects, and the key to continue after if more follow."""
    rows = session.scalars(window(query, column, after, size, newest_first=newest_first)).all()
    return cut(rows, size, lambda row: getattr(row, column.key))
