"""Rules every workspace resource follows: ownership, etags, idempotent creates."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..persistence.base import WorkspaceResource
from .auth import Caller
from .errors import Aborted, InvalidArgument, NotFound

R = TypeVar("R", bound=WorkspaceResource)


def get_owned(
    session: Session, model: type[R], caller: Caller, ref: str, *, etag: str = "",
    where: ColumnElement[bool] | None = None,
) -> R:
    """The caller's resource `ref`; another workspace's is NOT_FOUND, as if it did not exist.

    With `etag`, the resource must still be at it (else ABORTED); `where` narrows what counts as
    existing (a number's dead rows do not).
    """
    if not ref:
        raise InvalidArgument.of("ref", "is required")
    query = select(model).where(model.ref == ref, model.workspace_id == caller.workspace_id)
    found = session.scalar(query if where is None else query.where(where))
    if found is None:
        raise NotFound(f"No {model.kind} has the ref {ref!r}.")
    check_etag(found, etag)
    return found


def check_etag(resource: WorkspaceResource, etag: str) -> None:
    if etag and etag != resource.etag:
        raise Aborted(
            f"The {resource.kind} {resource.ref} changed since etag {etag!r} was read (now {resource.etag!r}); "
            "get it again and retry."
        )


def by_request_id(session: Session, model: type[R], caller: Caller, request_id: str | None) -> R | None:
    if not request_id:
        return None
    return session.scalar(
        select(model).where(model.workspace_id == caller.workspace_id, model.request_id == request_id)
    )


def insert_once(session: Session, resource: R, caller: Caller, on_conflict: Callable[[], Exception]) -> R:
    """Inserts `resource`, or returns the row an earlier create with its request_id made.

    A unique key taken by someone else raises `on_conflict()`. Runs in a
    savepoint so the conflict is detected by the database, not by a racy
    read-then-write.
    """
    model = type(resource)
    earlier = by_request_id(session, model, caller, resource.request_id)
    if earlier is not None:
        return earlier
    try:
        with session.begin_nested():
            session.add(resource)
    except IntegrityError:
        # A concurrent retry of the same request may have won the race.
        earlier = by_request_id(session, model, caller, resource.request_id)
        if earlier is not None:
            return earlier
        raise on_conflict() from None
    return resource
