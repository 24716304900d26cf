"""Rules every workspace resource follows: ownership, etags, idempotent creates."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..persistence.base import WorkspaceResource
from . import validation
from .auth import Caller
from .errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, Violations

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


def delete_finished(
    session: Session, model: Any, caller: Caller, refs: Sequence[str], *, running: Collection[str], rule: str
) -> None:
    """Deletes up to 1,000 of the caller's `model` rows (a WorkspaceResource with a `status`) by ref, all or none: an empty or unknown ref is
    INVALID_ARGUMENT / NOT_FOUND, one whose status is `running` FAILED_PRECONDITION saying `rule`, each
    naming the first such ref."""
    validation.check_batch_size("refs", len(refs), "refs")
    v = Violations()
    for i, ref in enumerate(refs):
        if not ref:
            v.add(f"refs[{i}]", "is required")
    v.raise_if_any()
    mine = model.workspace_id == caller.workspace_id
    found: dict[str, str] = dict(session.execute(select(model.ref, model.status).where(mine, model.ref.in_(set(refs)))).all())
    for i, ref in enumerate(refs):
        if ref not in found:
            raise NotFound(f"refs[{i}]: No {model.kind} has the ref {ref!r}.")
    for i, ref in enumerate(refs):
        if found[ref] in running:
            raise FailedPrecondition(f"refs[{i}]: The {model.kind} {ref} is {found[ref]}; {rule}.")
    deleted = session.execute(
        delete(model)
        .where(mine, model.ref.in_(list(found)), model.status.not_in(running))
        .execution_options(synchronize_session=False)
    )
    # A DELETE's Result is a CursorResult; fewer rows: one changed meanwhile, the transaction rolls back.
    if deleted.rowcount != len(found):  # type: ignore[attr-defined]
        raise FailedPrecondition(f"Some of these {model.kind}s changed meanwhile; list them again and retry.")
