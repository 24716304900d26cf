"""Small proto <-> Python conversions every service's messages module needs."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from .errors import InvalidArgument, Violations

if TYPE_CHECKING:  # the generic wrapper exists in the stubs only: mypy-protobuf's enums are one of it
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

V = TypeVar("V", bound=int)  # an enum's ValueType

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def timestamp(value: datetime) -> Timestamp:
    """A stored time (UTC-aware: persistence.base.UtcDateTime) as a Timestamp.

    Arithmetic rather than Timestamp.FromDatetime, which costs several times as much and runs for
    every time of every resource a response carries.
    """
    delta = value - _EPOCH
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def duration(value: timedelta) -> Duration:
    message = Duration()
    message.FromTimedelta(value)
    return message


# What a Timestamp may hold (google/protobuf/timestamp.proto: years 1 to 9999) and a Duration
# (+-10,000 years); Python's datetime and timedelta take no more either.
_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300799
_MAX_DURATION_SECONDS = 315576000000


def time_of(message: Any, field: str, v: Violations, name: str | None = None) -> datetime | None:
    """The `field` Timestamp of a request, UTC-aware, or None when it is not set. One out of the
    contract's range (years 1 to 9999, nanos 0 to 999,999,999) is INVALID_ARGUMENT on `name`
    (default: `field`), added to `v`."""
    if not message.HasField(field):
        return None
    value: Timestamp = getattr(message, field)
    if not (_MIN_SECONDS <= value.seconds <= _MAX_SECONDS and 0 <= value.nanos <= 999_999_999):
        v.add(name or field, f"must be a time from year 1 to 9999 with nanos 0 to 999999999, got seconds "
                             f"{value.seconds}, nanos {value.nanos}")
        return None
    return _EPOCH + timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def timedelta_of(message: Any, field: str, v: Violations, name: str | None = None) -> timedelta | None:
    """The `field` Duration of a request, or None when it is not set. One out of the contract's range
    (+-315,576,000,000 seconds, nanos of the seconds' sign below 1e9) is INVALID_ARGUMENT on `name`."""
    if not message.HasField(field):
        return None
    value: Duration = getattr(message, field)
    if not (
        abs(value.seconds) <= _MAX_DURATION_SECONDS
        and abs(value.nanos) <= 999_999_999
        and (value.seconds == 0 or value.nanos == 0 or (value.seconds > 0) == (value.nanos > 0))
    ):
        v.add(name or field, f"must be a duration of at most 315576000000 seconds, got seconds {value.seconds}, "
                             f"nanos {value.nanos}")
        return None
    return timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def optional(message: Any, field: str) -> Any:
    """The value of a proto3 `optional` field, or None when the caller did not set it."""
    return getattr(message, field) if message.HasField(field) else None


class ProtoEnum(Generic[V]):
    """A proto enum under the names the rules use: NUMBER_STATE_ACTIVE <-> "ACTIVE", both ways.

    Built once per enum, so a response pays a dict lookup per value.
    """

    def __init__(self, enum_type: _EnumTypeWrapper[V]):
        self.type_name = enum_type.DESCRIPTOR.name
        zero = enum_type.Value(enum_type.DESCRIPTOR.values_by_number[0].name)
        prefix = enum_type.Name(zero).removesuffix("UNSPECIFIED")
        self._numbers: dict[str, V] = {name.removeprefix(prefix): n for name, n in enum_type.items()}
        self._names: dict[int, str] = {n: name for name, n in self._numbers.items()}
        self._zero = zero

    def number(self, name: str | None) -> V:
        """The value of `name` ("ACTIVE"); None is the UNSPECIFIED value, 0."""
        return self._numbers[name] if name is not None else self._zero

    def name(self, number: int, field: str, v: Violations | None = None) -> str:
        """The name of `number` ("UNSPECIFIED" for 0).

        A number the contract does not define is INVALID_ARGUMENT on `field`: raised, or added to `v`
        (then "" is returned) so that the caller learns it with the request's other problems.
        """
        found = self._names.get(number)
        if found is not None:
            return found
        problem = f"{number} is not a value of {self.type_name}"
        if v is None:
            raise InvalidArgument.of(field, problem)
        v.add(field, problem)
        return ""


def changed_fields(request: Any, allowed: Collection[str], field: str = "update_mask") -> frozenset[str]:
    """The fields an Update request changes (AIP-134): the paths of its `update_mask`, each one of
    `allowed` (else INVALID_ARGUMENT naming `field`: a batch item's is `requests[i].update_mask`), or,
    without a mask, the allowed fields set to a non-default value. A path naming a message ("settings")
    stands for its allowed subfields too.
    """
    paths = list(request.update_mask.paths)
    if paths:
        unknown = [path for path in paths if path not in allowed]
        if unknown:
            raise InvalidArgument.of(
                field, f"{unknown[0]!r} is not a field this update changes; it changes {', '.join(allowed)}"
            )
    else:
        paths = [path for path in _populated(request) if path in allowed]
    return frozenset(
        [*paths, *(field for field in allowed for path in paths if field.startswith(path + "."))]
    )


def _populated(message: Any, prefix: str = "") -> list[str]:
    """The paths of the fields set to a non-default value, nested messages' fields as `outer.inner`."""
    found: list[str] = []
    for field, value in message.ListFields():
        path = prefix + field.name
        found.append(path)
        if field.message_type is not None and not field.is_repeated:
            found += _populated(value, path + ".")
    return found
