"""Domain errors. Logic modules raise these; `core.rpc` turns each into its gRPC status.

Plain Python on purpose: the rules of a service never import grpc.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class DomainError(Exception):
    """A request that cannot be served as sent; the message is shown to the caller."""


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class InvalidArgument(DomainError):
    def __init__(self, violations: list[FieldViolation]):
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))

    @classmethod
    def of(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])


# What one status may carry. gRPC refuses a trailer over 8 KB (the client reports RESOURCE_EXHAUSTED),
# and the message and the field violations travel in it, encoded: a value the caller sent is echoed
# to SHOWN_VALUE characters, a status names at most MAX_VIOLATIONS fields in VIOLATIONS_BYTES.
SHOWN_VALUE = 80
MAX_VIOLATIONS = 50
VIOLATIONS_BYTES = 3000
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def _shorter_quote(match: re.Match[str]) -> str:
    quoted = match.group()
    return quoted if len(quoted) <= SHOWN_VALUE + 2 else quoted[: SHOWN_VALUE + 1] + "…" + quoted[-1]


def shorten(text: str, limit: int) -> str:
    """`text` with each quoted value in it (the caller's, as `{value!r}` shows it) cut to SHOWN_VALUE
    characters and an ellipsis, then the whole cut to `limit` bytes of UTF-8."""
    if len(text) <= SHOWN_VALUE:
        return text
    text = _QUOTED.sub(_shorter_quote, text)
    encoded = text.encode()
    return text if len(encoded) <= limit else encoded[: limit - 3].decode(errors="ignore") + "…"


def shown_violations(violations: list[FieldViolation]) -> list[FieldViolation]:
    """The violations a status shows: each shortened, the first MAX_VIOLATIONS within VIOLATIONS_BYTES,
    and then one more saying how many were left out."""
    shown: list[FieldViolation] = []
    size = 0
    for v in violations:
        item = FieldViolation(shorten(v.field, 120), shorten(v.description, 300))
        size += len(item.field.encode()) + len(item.description.encode()) + 8
        if len(shown) == MAX_VIOLATIONS or size > VIOLATIONS_BYTES:
            break
        shown.append(item)
    if len(shown) < len(violations):
        left = len(violations) - len(shown)
        shown.append(FieldViolation("…", f"and {left:,} more {'violation' if left == 1 else 'violations'} not shown"))
    return shown


class NotFound(DomainError):
    pass


class AlreadyExists(DomainError):
    pass


class FailedPrecondition(DomainError):
    pass


class OutOfRange(DomainError):
    """A position (a stream's cursor) past what is kept."""


class Aborted(DomainError):
    pass


class Unauthenticated(DomainError):
    pass


class PermissionDenied(DomainError):
    pass


class ResourceExhausted(DomainError):
    """A quota or limit of the caller's is used up. With `retry_after` (a rate limit: it frees up by
    itself), its status carries a google.rpc.RetryInfo of that many seconds, which the clients wait out."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(DomainError):
    pass


class Unimplemented(DomainError):
    """A request this deployment cannot carry out (yet), whatever the caller retries."""


class Internal(DomainError):
    """Something on our side (the database's schema, its disk) that no retry of the caller's will fix."""


class Violations:
    """Collects every field problem of a request, so the caller learns them all at once."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self._items.append(FieldViolation(field, description))

    def __bool__(self) -> bool:
        return bool(self._items)

    def raise_if_any(self) -> None:
        if self._items:
            raise InvalidArgument(self._items)
