"""Small proto <-> Python conversions every servicer needs."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from .errors import InvalidArgument

_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = _EPOCH.replace(tzinfo=timezone.utc)


def timestamp(value: datetime) -> Timestamp:
    # SQLite hands back naive datetimes; every stored time is UTC. Arithmetic rather than
    # Timestamp.FromDatetime, which costs several times as much and runs for every time of every
    # resource a response carries.
    delta = value - (_EPOCH_UTC if value.tzinfo else _EPOCH)
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def optional(message: object, field: str) -> object | None:
    """The value of a proto3 `optional` field, or None when the caller did not set it."""
    return getattr(message, field) if message.HasField(field) else None  # type: ignore[attr-defined]


def enum_name(enum_type: Any, value: int, field: str) -> str:
    """A proto enum value's name without its type prefix (NUMBER_STATE_ACTIVE -> ACTIVE).

    A number the contract does not define is INVALID_ARGUMENT on `field`.
    """
    prefix = enum_type.Name(0).removesuffix("UNSPECIFIED")
    try:
        return enum_type.Name(value).removeprefix(prefix)
    except ValueError:
        raise InvalidArgument.of(field, f"{value} is not a value of {enum_type.DESCRIPTOR.name}") from None
