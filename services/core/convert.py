"""Small proto <-> Python conversions every servicer needs."""

from __future__ import annotations

from datetime import datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    # SQLite hands back naive datetimes; every stored time is UTC.
    ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    return ts


def optional(message: object, field: str) -> object | None:
    """The value of a proto3 `optional` field, or None when the caller did not set it."""
    return getattr(message, field) if message.HasField(field) else None  # type: ignore[attr-defined]
