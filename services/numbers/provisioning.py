"""The rules of Numbers: what a valid number, routing and settings are, and how they change."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, delete, or_, select
from sqlalchemy.orm import Session

from ..core import config, validation
from ..core.auth import Along, Caller
from ..core.errors import AlreadyExists, NotFound, Violations
from ..core.resources import get_owned, insert_once
from ..persistence import keyset
from ..persistence.base import utcnow
from ..persistence.db import AnySelect, Database
from ..persistence.tenancy import Workspace
from .models import EmergencyAddress, Number, Subscriber

MAX_NAME = 255
MAX_PROVIDER_REF = 128


MAX_CALLER_ID_PREFIX = 16
CONTEXTS = ("INCOMING", "UTILITY")


@dataclass(frozen=True)
class Routing:
    """Where inbound calls go: an AOR, an application's webhook, or a SIP forward.

    All None: the number has no routing (an acquired or reserved number, or one whose routing was
    cleared); it routes no call.
    """

    aor_link: str | None = None
    webhook: str | None = None
    forward_sip_to: str | None = None

    @property
    def is_set(self) -> bool:
        return any((self.aor_link, self.webhook, self.forward_sip_to))


@dataclass(frozen=True)
class Settings:
    """Number settings (UK PBX API); None leaves a field as it is, or at its default."""

    recording_enabled: bool | None = None
    caller_id_prefix: str | None = None
    caller_id_passthrough: bool | None = None
    context: str | None = None  # INCOMING or UTILITY
    messaging_webhook: str | None = None  # "" clears it


@dataclass(frozen=True)
class NumberFilter:
    """ListNumbers filters; the defaults match every number."""

    state: str | None = None
    e164_prefix: str = ""
    provider_ref: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None
    name_contains: str = ""
    aor_link: str = ""


@dataclass(frozen=True)
class IngressRoute:
    number_ref: str
    e164_number: str
    workspace_ref: str
    routing: Routing
    settings: Settings
    state: str = "ACTIVE"


NO_ROUTING = Routing()


def _checked_routing(v: Violations, routing: Routing) -> Routing:
    if routing == NO_ROUTING:  # an update clearing it
        return routing
    if routing.aor_link is not None:
        return Routing(aor_link=validation.sip_uri(v, "aor_link", routing.aor_link))
    if routing.forward_sip_to is not None:
        return Routing(forward_sip_to=validation.sip_uri(v, "forward_sip_to", routing.forward_sip_to))
    webhook = routing.webhook or ""
    if not webhook.strip():
        v.add("ingress_info.webhook", "is required")
        return routing
    return Routing(webhook=validation.http_url(v, "ingress_info.webhook", webhook))


def _checked_settings(v: Violations, settings: Settings) -> Settings:
    if settings.caller_id_prefix is not None:
        prefix = settings.caller_id_prefix
        if len(prefix) > MAX_CALLER_ID_PREFIX or not prefix.isprintable():
            v.add("settings.caller_id_prefix", f"must be at most {MAX_CALLER_ID_PREFIX} printable characters")
    if settings.context is not None and settings.context not in CONTEXTS:
        v.add("settings.context", f"must be NUMBER_CONTEXT_INCOMING or NUMBER_CONTEXT_UTILITY, got {settings.context}")
    if settings.messaging_webhook:
        url = validation.http_url(v, "settings.messaging_webhook", settings.messaging_webhook)
        return replace(settings, messaging_webhook=url)
    return settings


def apply_routing(number: Number, routing: Routing) -> None:
    number.aor_link = routing.aor_link
    number.ingress_webhook = routing.webhook
    number.forward_sip_to = routing.forward_sip_to


def apply_settings(number: Number, settings: Settings) -> None:
    for name, value in vars(settings).items():
        if value is not None:
            setattr(number, name, value)


def routing_of(number: Number) -> Routing:
    return Routing(number.aor_link, number.ingress_webhook, number.forward_sip_to)


def checked_routing_and_settings(
    v: Violations, routing: Routing | None, settings: Settings
) -> tuple[Routing | None, Settings]:
    return (_checked_routing(v, routing) if routing is not None else None), _checked_settings(v, settings)


# A number row is dead once its reservation lapsed or its release aged: it no
# longer counts for its workspace, and its E.164 is free again.
def dead(now: datetime | ColumnElement[datetime], released_before: datetime | ColumnElement[datetime] | None = None
         ) -> ColumnElement[bool]:
    """Whether a row is dead at `now`; `released_before` (default: now less the release aging) is when a
    release must have happened to have aged. Either may be a bound parameter, for a statement built once."""
    if released_before is None:
        assert isinstance(now, datetime)
        released_before = now - config.settings().release_aging
    return or_(
        and_(Number.state == "RESERVED", Number.reserve_expire_time <= now),
        and_(Number.state == "RELEASED", Number.release_time <= released_before),
    )


# Built once, run as Core on the session's connection: the ORM's bulk delete builds, cache-keys and
# evaluates a statement per call, which was a third of CreateNumber's CPU. No unit of work has loaded
# a dead row it would need to forget.
_RECLAIM = delete(Number).where(
    Number.e164_number == bindparam("e164"), dead(bindparam("now"), bindparam("released_before"))
)


def reclaim(session: Session, e164: str, now: datetime) -> None:
    """Removes the dead row holding `e164`, if there is one, so it can be taken again."""
    session.connection().execute(
        _RECLAIM, {"e164": e164, "now": now, "released_before": now - config.settings().release_aging}
    )


def new_number(caller: Caller, **fields: object) -> Number:
    """A Number of the caller's workspace with every default set (the ORM fills them only on flush)."""
    number = Number(
        workspace_id=caller.workspace_id,
        state="ACTIVE",
        from_inventory=False,
        recording_enabled=False,
        caller_id_prefix="",
        caller_id_passthrough=True,
        context="INCOMING",
        emergency_enabled=False,
        messaging_webhook="",
    )
    for name, value in fields.items():
        setattr(number, name, value)
    return number


def taken(e164: str) -> AlreadyExists:
    return AlreadyExists(f"The number {e164} is already provisioned.")


def checked_create_fields(
    v: Violations,
    *,
    name: str,
    provider_ref: str,
    routing: Routing | None,
    settings: Settings,
    porting_in: bool,
    request_id: str,
) -> tuple[dict[str, object], Routing, Settings]:
    """CreateNumber's checks of every field but the E.164 number (shared with BatchCreateNumbers, which
    checks E.164 numbers in bulk): the new Number's columns, its routing and its settings.

    The routing is optional, as a number bought from Twilio or Telnyx needs no voice URL or connection:
    a number without one routes no calls yet (GetIngressInfo says so) until UpdateNumber sets one."""
    fields: dict[str, object] = {
        "name": validation.text(v, "name", name, max_len=MAX_NAME),
        "provider_ref": validation.text(v, "provider_ref", provider_ref, max_len=MAX_PROVIDER_REF, required=True),
        "request_id": validation.request_id(v, request_id),
        "state": "PORTING_IN" if porting_in else "ACTIVE",
    }
    routing, settings = checked_routing_and_settings(v, routing, settings)
    return fields, routing or Routing(), settings


def create_number(
    session: Session,
    caller: Caller,
    *,
    name: str,
    provider_ref: str,
    e164_number: str,
    routing: Routing | None,
    settings: Settings,
    porting_in: bool,
    request_id: str,
) -> Number:
    v = Violations()
    e164 = validation.e164(v, "e164_number", e164_number)
    fields, routing, settings = checked_create_fields(
        v, name=name, provider_ref=provider_ref, routing=routing, settings=settings,
        porting_in=porting_in, request_id=request_id,
    )
    v.raise_if_any()
    assert e164 is not None  # else refused above
    number = new_number(caller, e164_number=e164, **fields)
    # A new number has neither: said here, so that answering with it does not load them (two round trips).
    number.subscriber = number.emergency_address = None
    apply_routing(number, routing)
    apply_settings(number, settings)
    reclaim(session, e164, utcnow())
    return insert_once(session, number, caller, lambda: taken(e164))


def get_number(session: Session, caller: Caller, ref: str, etag: str = "") -> Number:
    """The caller's live Number `ref` (a lapsed reservation or an aged release is gone), at `etag` if given."""
    return get_owned(session, Number, caller, ref, etag=etag, where=~dead(utcnow()))


def update_number(
    session: Session,
    caller: Caller,
    ref: str,
    *,
    name: str | None,
    provider_ref: str | None,
    routing: Routing | None,
    settings: Settings,
    etag: str,
) -> Number:
    v = Violations()
    if name is not None:
        name = validation.text(v, "name", name, max_len=MAX_NAME)
    if provider_ref is not None:
        provider_ref = validation.text(v, "provider_ref", provider_ref, max_len=MAX_PROVIDER_REF, required=True)
    routing, settings = checked_routing_and_settings(v, routing, settings)
    v.raise_if_any()
    number = get_number(session, caller, ref, etag)
    if name is not None:
        number.name = name
    if provider_ref is not None:
        number.provider_ref = provider_ref
    if routing is not None:
        apply_routing(number, routing)
    apply_settings(number, settings)
    number.update_time = utcnow()  # every update moves the etag
    session.flush()
    return number


def delete_number(session: Session, caller: Caller, ref: str, etag: str) -> None:
    session.delete(get_number(session, caller, ref, etag))


def checked_filter(
    state: str | None, e164_prefix: str, provider_ref: str, created_after: datetime | None,
    created_before: datetime | None, name_contains: str, aor_link: str = "",
) -> NumberFilter:
    v = Violations()
    e164_prefix = e164_prefix.strip()
    if e164_prefix and not (e164_prefix.startswith("+") and e164_prefix[1:].isdigit() and len(e164_prefix) <= 16):
        v.add("filter.e164_prefix", f"{e164_prefix!r} is not the start of an E.164 number, e.g. '+44' or '+1415'")
    number_filter = NumberFilter(
        state=state,
        e164_prefix=e164_prefix,
        provider_ref=validation.text(v, "filter.provider_ref", provider_ref, max_len=MAX_PROVIDER_REF),
        created_after=created_after,
        created_before=created_before,
        name_contains=validation.text(v, "filter.name_contains", name_contains, max_len=MAX_NAME),
        aor_link=(validation.sip_uri(v, "filter.aor_link", aor_link) or "") if aor_link.strip() else "",
    )
    v.raise_if_any()
    return number_filter


@dataclass(frozen=True)
class NumberPage:
    """A page of ListNumbers: rows of numbers in id order (the columns `number_proto` reads), the
    subscriber and emergency address rows of those that have one, by number id, and the last id
    served if more numbers follow."""

    numbers: Sequence[Any]
    subscribers: Mapping[int, Any]
    addresses: Mapping[int, Any]
    last: int | None


# The filters a page may combine; its statements are built once per keyset.Shape. The exact-match ones
# walk an index each (ix_numbers_workspace_id_<filter>_id); the prefix and substring ones scan the
# workspace's numbers in id order until the page is full.
_EQUALS = ("state", "provider_ref", "aor_link")
_FILTERS = (*_EQUALS, "e164_prefix", "created_after", "created_before", "name_contains")
_LIKE_ESCAPE = "\\"


def _escaped(text: str) -> str:
    """`text` to match literally in a LIKE pattern (escaped with _LIKE_ESCAPE)."""
    return text.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2).replace("%", _LIKE_ESCAPE + "%").replace("_", _LIKE_ESCAPE + "_")


@functools.lru_cache(maxsize=256)
def _page_queries(shape: keyset.Shape) -> tuple[AnySelect, AnySelect, AnySelect]:
    """The page's numbers, their subscribers and their emergency addresses, for one shape."""
    where: list[ColumnElement[bool]] = [
        Number.workspace_id == bindparam("workspace_id"), ~dead(bindparam("now"), bindparam("released_before")),
    ]
    where += [getattr(Number, name) == bindparam(name) for name in _EQUALS if name in shape.filters]
    if "e164_prefix" in shape.filters:
        where.append(Number.e164_number.startswith(bindparam("e164_prefix"), escape=_LIKE_ESCAPE))
    if "created_after" in shape.filters:
        where.append(Number.create_time >= bindparam("created_after"))
    if "created_before" in shape.filters:
        where.append(Number.create_time < bindparam("created_before"))
    if "name_contains" in shape.filters:
        where.append(Number.name.icontains(bindparam("name_contains"), escape=_LIKE_ESCAPE))
    numbers = keyset.window(select(*Number.__table__.c).where(*where), Number.id, shape.after, shape.size)
    ids = keyset.window(select(Number.id).where(*where), Number.id, shape.after, shape.size)
    subscribers = select(*Subscriber.__table__.c).where(Subscriber.number_id.in_(ids))
    addresses = select(*EmergencyAddress.__table__.c).where(EmergencyAddress.number_id.in_(ids))
    return numbers, subscribers, addresses


def list_numbers(
    session: Session, caller: Caller, number_filter: NumberFilter, after_id: int | None, size: int
) -> NumberPage:
    """One page of the workspace's live numbers, in id order, as rows (no ORM objects: on a page of 20,
    building them and loading their relationships cost several times the queries)."""
    f = number_filter
    values: dict[str, Any] = {name: getattr(f, name) for name in _FILTERS if getattr(f, name)}
    for name in ("e164_prefix", "name_contains"):
        if name in values:
            values[name] = _escaped(values[name])
    now = utcnow()
    queries = _page_queries(keyset.shape_of(values, after_id, size))
    values.update(workspace_id=caller.workspace_id, after=after_id, now=now,
                  released_before=now - config.settings().release_aging)
    connection = session.connection()  # Core rows straight off the cursor, without the ORM's layer
    numbers, last = keyset.cut(connection.execute(queries[0], values).all(), size, lambda row: row.id)
    subscribers: dict[int, Any] = {}
    addresses: dict[int, Any] = {}
    if numbers:
        subscribers = {row.number_id: row for row in connection.execute(queries[1], values)}
        addresses = {row.number_id: row for row in connection.execute(queries[2], values)}
    return NumberPage(numbers, subscribers, addresses, last)


_INGRESS_COLUMNS = (
    select(
        Number.ref,
        Number.e164_number,
        Number.workspace_id,
        Workspace.ref,
        Number.aor_link,
        Number.ingress_webhook,
        Number.forward_sip_to,
        Number.recording_enabled,
        Number.caller_id_prefix,
        Number.caller_id_passthrough,
        Number.state,
    )
    .join(Workspace, Workspace.id == Number.workspace_id)
    .where(Number.e164_number == bindparam("e164"))
)
_INGRESS_LOOKUP = _INGRESS_COLUMNS.where(Number.state == "ACTIVE")
# Spelled as an OR: `lookup` runs a statement compiled once, which an IN's expanding parameter is not.
_INGRESS_OR_SUSPENDED = _INGRESS_COLUMNS.where(or_(Number.state == "ACTIVE", Number.state == "SUSPENDED"))


_UNASKED = object()


def ingress_along(e164_number: str, include_suspended: bool = False) -> Along:
    """`ingress_route`'s exact lookup, to ask in the API key's round trip."""
    return Along(_INGRESS_OR_SUSPENDED if include_suspended else _INGRESS_LOOKUP, {"e164": e164_number})


_MESSAGING_LOOKUP = (
    select(Number.ref, Number.e164_number, Number.workspace_id, Workspace.ref, Number.messaging_webhook)
    .join(Workspace, Workspace.id == Number.workspace_id)
    .where(Number.e164_number == bindparam("e164"), Number.state == "ACTIVE")
)


@dataclass(frozen=True)
class MessagingRoute:
    number_ref: str
    e164_number: str
    workspace_ref: str
    messaging_webhook: str


async def _active_number_row(db: Database, caller: Caller, lookup: Any, e164_number: str, found: Any = _UNASKED) -> Any:
    """The row `lookup` finds for the number `e164_number` (ACTIVE, as lookups ask), if the caller may see it. Stored
    numbers are E.164 already, so the number is parsed only when the exact lookup misses (to normalise
    another spelling, or to explain why it is not a number). `found`: the exact lookup's row, asked already."""
    row = await db.lookup(lookup, e164=e164_number) if found is _UNASKED else found
    if row is None:
        v = Violations()
        e164 = validation.e164(v, "e164_number", e164_number)
        v.raise_if_any()
        row = await db.lookup(lookup, e164=e164) if e164 != e164_number else None
    if row is None or (row[2] != caller.workspace_id and not caller.sees_every_workspace_routing):
        raise NotFound(f"No number routes {e164_number}.")
    return row


async def messaging_route(db: Database, caller: Caller, e164_number: str) -> MessagingRoute:
    """Where an SMS to `e164_number` goes: Messaging's on-net lookup."""
    row = await _active_number_row(db, caller, _MESSAGING_LOOKUP, e164_number)
    return MessagingRoute(row[0], row[1], row[3], row[4])


async def ingress_route(
    db: Database, caller: Caller, e164_number: str, include_suspended: bool = False, found: Any = _UNASKED
) -> IngressRoute:
    """Where a call to `e164_number` goes, if the caller may know: the SIP edge's hot path. Only ACTIVE
    numbers with a routing route calls (a SUSPENDED one is answered, routing none, when
    `include_suspended`). `found`: what `ingress_along` found, when it was asked with the API key."""
    lookup = _INGRESS_OR_SUSPENDED if include_suspended else _INGRESS_LOOKUP
    row = await _active_number_row(db, caller, lookup, e164_number, found)
    routing = Routing(*row[4:7])
    if not routing.is_set:
        raise NotFound(f"The number {e164_number} has no routing yet.")
    settings = Settings(recording_enabled=bool(row[7]), caller_id_prefix=row[8], caller_id_passthrough=bool(row[9]))
    return IngressRoute(row[0], row[1], row[3], routing, settings, row[10])
