"""Every string a statement binds to a `String(n)` column is at most n characters, on every backend.

PostgreSQL refuses a longer value (`value too long for type character varying(n)`: an INTERNAL error
for what is the caller's input) where SQLite stores it. The services check each field they take
(validation.text and the like); this is the net under them: one check, derived from the models'
column types, before any statement reaches the database. A value over its column's length is
INVALID_ARGUMENT naming the column. It runs for the statements of Sessions and Connections (the raw
cursor lookups of the hot path bind no caller text but an E.164 already checked).
"""

from __future__ import annotations

import re
import weakref
from typing import Any

from sqlalchemy import String, event
from sqlalchemy.engine import Engine

from ..core.errors import InvalidArgument

_SUFFIX = re.compile(r"_\d+$")  # SQLAlchemy names a second bind of a column `name_1`
# Per compiled statement (cached by SQLAlchemy), its binds of limited strings: (bind, column, length).
_LIMITS: weakref.WeakKeyDictionary[Any, tuple[tuple[str, str, int], ...]] = weakref.WeakKeyDictionary()


def _limits_of(compiled: Any) -> tuple[tuple[str, str, int], ...]:
    found = _LIMITS.get(compiled)
    if found is None:
        found = tuple(
            (bind.key, _SUFFIX.sub("", bind.key), bind.type.length)
            for bind in getattr(compiled, "binds", {}).values()  # a DDL compiler has none
            if isinstance(bind.type, String) and bind.type.length
        )
        _LIMITS[compiled] = found
    return found


@event.listens_for(Engine, "before_cursor_execute")
def _check_lengths(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    compiled = getattr(context, "compiled", None)
    if compiled is None or getattr(context, "_lengths_checked", False):
        return
    limits = _limits_of(compiled)
    if not limits:
        return
    # An executemany the driver is sent in several statements (insertmanyvalues: an ORM flush of many
    # rows) calls this for each of them, with every row's parameters: the rows are checked once.
    context._lengths_checked = True
    for values in context.compiled_parameters:
        for key, column, length in limits:
            value = values.get(key)
            if isinstance(value, str) and len(value) > length:
                raise InvalidArgument.of(column, f"must be at most {length} characters, got {len(value):,}")
