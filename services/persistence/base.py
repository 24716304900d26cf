"""The declarative base and the columns every workspace resource carries."""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone
from typing import Any, ClassVar

from sqlalchemy import BigInteger, DateTime, Dialect, ForeignKey, Integer, MetaData, String, Table, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from . import limits  # noqa: F401  # registers the check of String(n) lengths, for every engine

# Named constraints, so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
Id = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator[datetime]):
    """A point in time, stored in UTC and always read back UTC-aware.

    PostgreSQL keeps the zone; SQLite keeps the digits alone and hands back naive datetimes, which
    this makes aware again, so no code above the database needs to know which backend it is on.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None and value.utcoffset():
            return value.astimezone(timezone.utc)  # SQLite would store another zone's digits as they are
        return value

    def coerce_compared_value(self, op: Any, value: Any) -> Any:
        # `time - timedelta` is arithmetic with an interval: leave that to DateTime's rules.
        coerced = self.impl_instance.coerce_compared_value(op, value)
        return self if coerced is self.impl_instance else coerced

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


def new_ref() -> str:
    """An opaque, unguessable resource id: 28 hex digits, the milliseconds since the epoch, then 64
    random bits.

    Time first, so that new rows go at the end of the ref's unique index: random refs land all over
    it, and once the index outgrows the database's cache every insert writes a page of its own.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.randbits(64):016x}"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def table_of(model: type[Base]) -> Table:
    """A model's Table, for Core statements on the hot paths (the declarative base types `__table__`
    as any FromClause)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def etag_of(ref: str, version: int) -> str:
    """A resource's etag, from its row (or an ORM object)."""
    return f"{ref}-{version}"


class WorkspaceResource:
    """Columns of every resource a workspace owns.

    `id` orders lists (keyset paging); `ref` is what callers see; `version`
    guards concurrent updates and is the etag.
    """

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(32), unique=True, default=new_ref)
    workspace_id: Mapped[int] = mapped_column(
        Id, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    kind: ClassVar[str]  # what a person calls one, in messages: "number", "call"

    create_time: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Idempotency key of the Create that made the row; unique per workspace.
    request_id: Mapped[str | None] = mapped_column(String(128))

    @declared_attr.directive
    def __mapper_args__(cls) -> dict:  # noqa: N805
        return {"version_id_col": cls.version}

    @property
    def etag(self) -> str:
        return etag_of(self.ref, self.version)
