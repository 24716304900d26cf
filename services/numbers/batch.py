"""The rules of BatchCreateNumbers and BatchDeleteNumbers: up to 1,000 numbers, all of them or none.

Each item is checked as CreateNumber checks it (`provisioning.checked_create_fields`), its problems
named `requests[i].<field>`. New rows go in with one executemany INSERT, not an ORM object each: bulk
imports are bound by CPU, and the ORM's unit of work costs several times the INSERT per row. The
calling RPC's transaction makes the batch all-or-nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import delete, insert, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..core import validation
from ..core.auth import Caller
from ..core.errors import Aborted, AlreadyExists, InvalidArgument, NotFound, Violations
from ..persistence.base import WorkspaceResource, new_ref, table_of, utcnow
from . import catalog, provisioning
from .models import Number
from .provisioning import Routing, Settings

DEFAULT_SETTINGS = Settings()  # an item without settings: every one at its default

T = TypeVar("T")


@dataclass(slots=True)  # not frozen: a frozen dataclass is slow to build, and a batch builds 1,000
class Create:
    """One item of BatchCreateNumbers, as CreateNumber takes it."""

    name: str
    provider_ref: str
    e164_number: str
    routing: Routing | None
    settings: Settings
    porting_in: bool
    request_id: str


class NewNumber:
    """A Number row about to be inserted, as a plain object: its __dict__ is the INSERT's parameters,
    and `number_proto` reads it as it reads a Number (without the ORM's cost per object)."""

    etag = WorkspaceResource.etag
    # The columns read here by name; the others are read only through `number_proto`.
    e164_number: str
    request_id: str | None

    def __init__(self, columns: dict[str, Any]):
        self.__dict__ = columns

    def __getattr__(self, name: str) -> None:
        if name in _NUMBER_ATTRIBUTES:  # not set: None, as on a new Number object
            return None
        raise AttributeError(name)


_NUMBER_ATTRIBUTES = frozenset(sa_inspect(Number).attrs.keys())
_NUMBERS = table_of(Number)


class _ItemViolations(Violations):
    """Records an item's violations in the batch's, under `requests[i].`."""

    def __init__(self, batch: Violations, prefix: str):
        self._batch, self._prefix, self._any = batch, prefix, False

    def add(self, field: str, description: str) -> None:
        self._any = True
        self._batch.add(f"{self._prefix}.{field}", description)

    def __bool__(self) -> bool:
        return self._any


def _checked(requests: Sequence[T], read: Callable[[T], Create], caller: Caller) -> list[NewNumber]:
    """Every item as the row it would insert; every violation of the batch at once, or none."""
    validation.check_batch_size("requests", len(requests), "creates")
    v = Violations()
    # What CreateNumber's new_number sets, as columns, and what the ORM would add on flush.
    now = utcnow()
    defaults = {k: value for k, value in vars(provisioning.new_number(caller)).items() if not k.startswith("_")}
    defaults.update(create_time=now, update_time=now, version=1)
    rows: list[NewNumber] = []
    first_of_e164: dict[str, int] = {}
    first_of_request_id: dict[str, int] = {}
    for i, request in enumerate(requests):
        prefix = f"requests[{i}]"
        try:
            item = read(request)
        except InvalidArgument as error:  # a field the proto conversion already rejected
            for violation in error.violations:
                v.add(f"{prefix}.{violation.field}", violation.description)
            continue
        iv = _ItemViolations(v, prefix)
        e164 = catalog.checked_e164(iv, "e164_number", item.e164_number)
        fields, routing, settings = provisioning.checked_create_fields(
            iv, name=item.name, provider_ref=item.provider_ref, routing=item.routing, settings=item.settings,
            porting_in=item.porting_in, request_id=item.request_id,
        )
        if e164 is not None:
            earlier = first_of_e164.setdefault(e164, i)
            if earlier != i:
                iv.add("e164_number", f"{e164} is requests[{earlier}] too; a batch creates a number once")
        request_id = fields["request_id"]
        if isinstance(request_id, str):
            earlier = first_of_request_id.setdefault(request_id, i)
            if earlier != i:
                iv.add("request_id", f"{request_id!r} is the request_id of requests[{earlier}] too")
        if iv:
            continue
        row = NewNumber({**defaults, **fields, "e164_number": e164, "ref": new_ref()})
        # Both set a Number's attributes, which a NewNumber stands in for.
        provisioning.apply_routing(row, routing)  # type: ignore[arg-type]
        provisioning.apply_settings(row, settings)  # type: ignore[arg-type]
        rows.append(row)
    v.raise_if_any()
    return rows


def _made_before(session: Session, caller: Caller, rows: Sequence[NewNumber]) -> dict[str | None, Number]:
    """The Numbers earlier creates made with the request_ids of `rows`, by request_id. Typed by a
    row's request_id, which may be None: a row without one is looked up too, and never found."""
    request_ids = [row.request_id for row in rows if row.request_id]
    if not request_ids:
        return {}
    found = session.scalars(
        select(Number).where(Number.workspace_id == caller.workspace_id, Number.request_id.in_(request_ids))
    )
    return {number.request_id: number for number in found}


def create_numbers(
    session: Session, caller: Caller, requests: Sequence[T], read: Callable[[T], Create]
) -> list[Number | NewNumber]:
    """Creates the Numbers of a batch, all or none, and returns them in the requests' order.

    `read` turns one request into a Create; an InvalidArgument it raises is named after the item.
    Items whose request_id an earlier create used return the Number made then.

    The INSERT is tried first and the unique keys tell what stands in the way, so a fresh batch costs
    one statement: an item whose request_id was used (a retry), a dead row (lapsed reservation, aged
    release) of one of its numbers, or a number someone holds (ALREADY_EXISTS).
    """
    rows = _checked(requests, read, caller)
    earlier: dict[str | None, Number] = {}
    for _attempt in range(4):
        fresh = [row for row in rows if row.request_id not in earlier]
        if not fresh:
            break
        try:
            with session.begin_nested():
                session.execute(insert(_NUMBERS), [vars(row) for row in fresh])
            break
        except IntegrityError:
            found = _made_before(session, caller, rows)
            fresh = [row for row in rows if row.request_id not in found]
            if len(found) > len(earlier) or _reclaim(session, fresh):
                earlier = found
                continue
            _raise_taken(session, rows, fresh)
            raise
    else:  # each try found something new in the way: only concurrent creates of the same numbers do that
        raise Aborted("Other requests kept creating numbers of this batch meanwhile; retry it.")
    return [earlier.get(row.request_id, row) for row in rows]


def _reclaim(session: Session, rows: Sequence[NewNumber]) -> int:
    """Removes the dead rows holding numbers of `rows`, as CreateNumber does; how many there were."""
    dead = session.execute(
        delete(Number)
        .where(Number.e164_number.in_([row.e164_number for row in rows]), provisioning.dead(utcnow()))
        .execution_options(synchronize_session=False)
    )
    return dead.rowcount  # type: ignore[attr-defined]  # a DELETE's Result is a CursorResult


def _raise_taken(session: Session, rows: Sequence[NewNumber], fresh: Sequence[NewNumber]) -> None:
    """ALREADY_EXISTS naming the first item whose E.164 number is held (in any workspace), if one is."""
    e164s = [row.e164_number for row in fresh]
    held = set(session.scalars(select(Number.e164_number).where(Number.e164_number.in_(e164s))))
    inserting = {id(row) for row in fresh}
    for index, row in enumerate(rows):  # no item was dropped by the checks: rows[i] is requests[i]
        if id(row) in inserting and row.e164_number in held:
            raise AlreadyExists(f"requests[{index}]: {provisioning.taken(row.e164_number)}")


def delete_numbers(session: Session, caller: Caller, refs: Sequence[str]) -> None:
    """Deletes the caller's live Numbers `refs`, all or none; the first ref that is not one is NOT_FOUND."""
    validation.check_batch_size("refs", len(refs), "refs")
    v = Violations()
    first_of_ref: dict[str, int] = {}
    for i, ref in enumerate(refs):
        if not ref:
            v.add(f"refs[{i}]", "is required")
        elif (earlier := first_of_ref.setdefault(ref, i)) != i:
            v.add(f"refs[{i}]", f"{ref!r} is refs[{earlier}] too; a batch deletes a number once")
    v.raise_if_any()
    deleted = set(
        session.scalars(
            delete(Number)
            .where(Number.ref.in_(refs), Number.workspace_id == caller.workspace_id, ~provisioning.dead(utcnow()))
            .returning(Number.ref)
            .execution_options(synchronize_session=False)
        )
    )
    if len(deleted) < len(refs):  # the caller's transaction rolls the deletes back
        index, ref = next((i, ref) for i, ref in enumerate(refs) if ref not in deleted)
        raise NotFound(f"refs[{index}]: No number has the ref {ref!r}.")
