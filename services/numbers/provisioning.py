"""The rules of Numbers: what a valid number and routing are, and how they change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ..core import validation
from ..core.auth import Caller
from ..core.errors import AlreadyExists, NotFound, Violations
from ..core.resources import check_etag, get_owned, insert_once
from ..persistence import keyset
from ..persistence.base import utcnow
from ..persistence.db import Database
from ..persistence.tenancy import Workspace
from .models import Number

MAX_NAME = 255
MAX_PROVIDER_REF = 128
MAX_APP_REF = 128


@dataclass(frozen=True)
class Routing:
    """Where inbound calls go: an AOR, or an application (webhook and/or app ref)."""

    aor_link: str | None = None
    webhook: str | None = None
    app_ref: str | None = None


@dataclass(frozen=True)
class IngressRoute:
    number_ref: str
    e164_number: str
    workspace_ref: str
    routing: Routing


def _checked_routing(v: Violations, routing: Routing) -> Routing:
    if routing.aor_link is not None:
        return Routing(aor_link=validation.sip_uri(v, "aor_link", routing.aor_link))
    webhook = routing.webhook or ""
    app_ref = validation.text(v, "ingress_info.app_ref", routing.app_ref or "", max_len=MAX_APP_REF)
    if not webhook.strip() and not app_ref:
        v.add("ingress_info", "set webhook, app_ref or both")
        return routing
    return Routing(
        webhook=validation.http_url(v, "ingress_info.webhook", webhook) if webhook.strip() else None,
        app_ref=app_ref or None,
    )


def _apply_routing(number: Number, routing: Routing) -> None:
    number.aor_link = routing.aor_link
    number.ingress_webhook = routing.webhook
    number.ingress_app_ref = routing.app_ref


def routing_of(number: Number) -> Routing:
    return Routing(aor_link=number.aor_link, webhook=number.ingress_webhook, app_ref=number.ingress_app_ref)


def create_number(
    session: Session,
    caller: Caller,
    *,
    name: str,
    provider_ref: str,
    e164_number: str,
    routing: Routing | None,
    request_id: str,
) -> Number:
    v = Violations()
    e164 = validation.e164(v, "e164_number", e164_number)
    number = Number(
        workspace_id=caller.workspace_id,
        name=validation.text(v, "name", name, max_len=MAX_NAME),
        provider_ref=validation.text(v, "provider_ref", provider_ref, max_len=MAX_PROVIDER_REF, required=True),
        e164_number=e164,
        request_id=validation.request_id(v, request_id),
    )
    if routing is None:
        v.add("routing", "set exactly one of aor_link or ingress_info")
    else:
        _apply_routing(number, _checked_routing(v, routing))
    v.raise_if_any()
    return insert_once(
        session, number, caller, lambda: AlreadyExists(f"The number {e164} is already provisioned.")
    )


def get_number(session: Session, caller: Caller, ref: str) -> Number:
    return get_owned(session, Number, caller, ref, "number")


def update_number(
    session: Session,
    caller: Caller,
    ref: str,
    *,
    name: str | None,
    provider_ref: str | None,
    routing: Routing | None,
    etag: str,
) -> Number:
    v = Violations()
    if name is not None:
        name = validation.text(v, "name", name, max_len=MAX_NAME)
    if provider_ref is not None:
        provider_ref = validation.text(v, "provider_ref", provider_ref, max_len=MAX_PROVIDER_REF, required=True)
    if routing is not None:
        routing = _checked_routing(v, routing)
    v.raise_if_any()
    number = get_number(session, caller, ref)
    check_etag(number, etag, "number")
    if name is not None:
        number.name = name
    if provider_ref is not None:
        number.provider_ref = provider_ref
    if routing is not None:
        _apply_routing(number, routing)
    number.update_time = utcnow()  # every update moves the etag
    session.flush()
    return number


def delete_number(session: Session, caller: Caller, ref: str, etag: str) -> None:
    number = get_number(session, caller, ref)
    check_etag(number, etag, "number")
    session.delete(number)


def list_numbers(session: Session, caller: Caller, after_id: int, size: int) -> tuple[Sequence[Number], int | None]:
    query = select(Number).where(Number.workspace_id == caller.workspace_id)
    return keyset.page(session, query, Number.id, after_id, size)


_INGRESS_LOOKUP = (
    select(
        Number.ref,
        Number.e164_number,
        Number.workspace_id,
        Workspace.ref,
        Number.aor_link,
        Number.ingress_webhook,
        Number.ingress_app_ref,
    )
    .join(Workspace, Workspace.id == Number.workspace_id)
    .where(Number.e164_number == bindparam("e164"))
)


def ingress_route(db: Database, caller: Caller, e164_number: str) -> IngressRoute:
    """Where a call to `e164_number` goes, if the caller may know: the SIP edge's hot path.

    Stored numbers are E.164 already, so the number is parsed only when the
    exact lookup misses (to normalise another spelling, or to explain why it
    is not a number).
    """
    row = db.fetch_one(_INGRESS_LOOKUP, e164=e164_number)
    if row is None:
        v = Violations()
        e164 = validation.e164(v, "e164_number", e164_number)
        v.raise_if_any()
        row = db.fetch_one(_INGRESS_LOOKUP, e164=e164) if e164 != e164_number else None
    if row is None or (row[2] != caller.workspace_id and not caller.sees_every_workspace_routing):
        raise NotFound(f"No number routes {e164_number}.")
    return IngressRoute(row[0], row[1], row[3], Routing(aor_link=row[4], webhook=row[5], app_ref=row[6]))
