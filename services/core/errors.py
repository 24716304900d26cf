"""Domain errors. Logic modules raise these; `core.rpc` turns each into its gRPC status.

Plain Python on purpose: the rules of a service never import grpc.
"""

from __future__ import annotations

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


class NotFound(DomainError):
    pass


class AlreadyExists(DomainError):
    pass


class FailedPrecondition(DomainError):
    pass


class Aborted(DomainError):
    pass


class Unauthenticated(DomainError):
    pass


class PermissionDenied(DomainError):
    pass


class Unavailable(DomainError):
    pass


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
