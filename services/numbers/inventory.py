"""The deployment's inventory: numbers workspaces can find, reserve and acquire.

An inventory number is available while no workspace holds a live Number for
it; nothing else marks it taken. So a lapsed reservation or an aged release
makes it available again without any sweeping, and two workspaces racing
for one number are decided by the unique E.164 of `numbers`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import phonenumbers
from sqlalchemy import and_, func, insert, select
from sqlalchemy.orm import Session

from ..core import config, validation
from ..core.auth import Caller
from ..core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Violations
from ..core.resources import by_request_id, insert_once
from ..persistence import keyset
from ..persistence.base import utcnow
from ..persistence.db import AnySelect
from . import lifecycle
from .models import InventoryNumber, Number
from .provisioning import (
    MAX_NAME,
    MAX_PROVIDER_REF,
    Routing,
    Settings,
    apply_routing,
    apply_settings,
    checked_routing_and_settings,
    dead,
    new_number,
    reclaim,
    taken,
)

DEFAULT_HOLD = timedelta(minutes=30)
MIN_HOLD, MAX_HOLD = timedelta(seconds=1), timedelta(days=7)
MAX_IMPORT = 10_000
MAX_CHECK = 1_000
_IN_CHUNK = 500  # rows per IN (...) list


@dataclass(frozen=True)
class AvailablePrefix:
    prefix: str
    national_prefix: str
    description: str
    region_code: str
    available: int


@dataclass(frozen=True)
class AvailableNumber:
    e164_number: str
    national_format: str
    description: str
    provider_ref: str


def prefix_of(number: phonenumbers.PhoneNumber) -> str:
    """Country code and area or network code in E.164 form: '+441224' for an Aberdeen number."""
    significant = phonenumbers.national_significant_number(number)
    length = phonenumbers.length_of_national_destination_code(number) or min(3, len(significant))
    return f"+{number.country_code}{significant[:length]}"


def _national_prefix(number: phonenumbers.PhoneNumber, prefix: str) -> str:
    """`prefix` as dialled nationally: '+441224' -> '01224', '+1415' -> '415'."""
    national = "".join(c for c in phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
                       if c.isdigit())
    trunk = len(national) - len(phonenumbers.national_significant_number(number))
    return national[: trunk + len(prefix) - len(f"+{number.country_code}")]


def _where(number: phonenumbers.PhoneNumber) -> str:
    from phonenumbers import geocoder  # ~100 MB of data once loaded: only when a description is asked for

    return geocoder.description_for_number(number, "en") or geocoder.country_name_for_number(number, "en")


# --- adding to the inventory


def import_rows(
    session: Session, rows: Iterable[tuple[str, str]], field: Callable[[int, str], str]
) -> tuple[int, int]:
    """Adds (e164, provider_ref) rows; returns (added, already present). Nothing is added if any row is bad.

    `field(i, name)` names a field of row i in errors ('entries[3].e164_number',
    'line 5: e164_number'). Runs in the caller's transaction, so a failure
    anywhere rolls all of it back.
    """
    v = Violations()
    fresh: dict[str, dict[str, object]] = {}
    repeated = 0
    now = utcnow()
    for i, (raw_e164, raw_provider) in enumerate(rows):
        e164 = validation.e164(v, field(i, "e164_number"), raw_e164)
        provider_ref = validation.text(v, field(i, "provider_ref"), raw_provider, max_len=MAX_PROVIDER_REF,
                                       required=True)
        if e164 is None or not provider_ref:
            continue
        if e164 in fresh:
            repeated += 1
            continue
        parsed = phonenumbers.parse(e164)
        fresh[e164] = {
            "e164_number": e164,
            "provider_ref": provider_ref,
            "region_code": phonenumbers.region_code_for_number(parsed) or "001",
            "prefix": prefix_of(parsed),
            "create_time": now,
        }
    v.raise_if_any()
    present: set[str] = set()
    keys = list(fresh)
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start : start + _IN_CHUNK]
        present.update(session.scalars(select(InventoryNumber.e164_number).where(InventoryNumber.e164_number.in_(chunk))))
    new_rows = [row for e164, row in fresh.items() if e164 not in present]
    if new_rows:
        session.execute(insert(InventoryNumber), new_rows)
    return len(new_rows), len(present) + repeated


def import_entries(session: Session, entries: Sequence[tuple[str, str]]) -> tuple[int, int]:
    """ImportInventory: 1 to 10,000 entries."""
    if not 0 < len(entries) <= MAX_IMPORT:
        raise InvalidArgument.of("entries", f"must hold 1 to {MAX_IMPORT:,} numbers, got {len(entries):,}")
    return import_rows(session, entries, lambda i, name: f"entries[{i}].{name}")


# --- what is available


def _available(now: datetime) -> AnySelect:
    """Inventory rows no workspace holds a live Number for."""
    holder = and_(Number.e164_number == InventoryNumber.e164_number, ~dead(now))
    return select(InventoryNumber).outerjoin(Number, holder).where(Number.id.is_(None))


def checked_region(region_code: str) -> str:
    """ListAvailablePrefixes' region: ISO 3166-1, upper case; "" for every region."""
    region = region_code.strip().upper()
    if region and region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidArgument.of("region_code", f"{region_code!r} is not an ISO 3166-1 region code, e.g. 'GB'")
    return region


def available_prefixes(session: Session, region: str, after: str | None, size: int
                       ) -> tuple[list[AvailablePrefix], str | None]:
    """One page of the prefixes with available numbers (of `region`, a `checked_region`), after the
    prefix `after`, and the last prefix served if more follow."""
    available = _available(utcnow()).subquery()
    query = select(available.c.prefix, available.c.region_code, func.count(), func.min(available.c.e164_number))
    if region:
        query = query.where(available.c.region_code == region)
    query = keyset.window(query.group_by(available.c.prefix, available.c.region_code), available.c.prefix, after, size)
    rows, last = keyset.cut(session.execute(query).all(), size, lambda row: row[0])
    prefixes = []
    for prefix, region_of, count, sample in rows:
        number = phonenumbers.parse(sample)
        national = _national_prefix(number, prefix)
        prefixes.append(AvailablePrefix(prefix, national, f"{_where(number)} ({national})", region_of, count))
    return prefixes, last


def e164_prefix(v: Violations, prefix: str, region_code: str) -> str:
    """A search prefix in E.164 form: '+441224' as given, or national '01224' read in the region."""
    prefix = prefix.strip().replace(" ", "")
    region = (region_code.strip() or config.settings().home_region).upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        v.add("region_code", f"{region_code!r} is not an ISO 3166-1 region code, e.g. 'GB'")
        return ""
    digits = prefix.removeprefix("+")
    if not digits.isdigit() or len(digits) > 15:
        v.add("prefix", f"{prefix!r} is not the start of a number: give digits, e.g. '+44122' or '01224'")
        return ""
    if prefix.startswith("+"):
        return prefix
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    assert metadata is not None, region  # a supported region, checked above
    trunk = metadata.national_prefix or ""
    if trunk and digits.startswith(trunk):
        digits = digits[len(trunk) :]
    return f"+{phonenumbers.country_code_for_region(region)}{digits}"


def search(session: Session, prefix: str, after: str | None, size: int) -> tuple[list[AvailableNumber], str | None]:
    """One page of available numbers starting with `prefix` (E.164 form), after the E.164 `after`."""
    query = _available(utcnow()).where(
        InventoryNumber.e164_number >= prefix, InventoryNumber.e164_number < prefix + ":"
    )
    rows, last = keyset.page(session, query, InventoryNumber.e164_number, after, size)
    numbers = []
    for row in rows:
        parsed = phonenumbers.parse(row.e164_number)
        national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        numbers.append(AvailableNumber(row.e164_number, national, _where(parsed), row.provider_ref))
    return numbers, last


def check(session: Session, e164_numbers: Sequence[str]) -> list[tuple[str, str]]:
    """(e164, AVAILABLE | TAKEN | NOT_IN_INVENTORY) for each number, in order."""
    if not 0 < len(e164_numbers) <= MAX_CHECK:
        raise InvalidArgument.of("e164_numbers", f"must hold 1 to {MAX_CHECK:,} numbers, got {len(e164_numbers):,}")
    v = Violations()
    checked = [validation.e164(v, f"e164_numbers[{i}]", n) for i, n in enumerate(e164_numbers)]
    v.raise_if_any()
    normalised = [n for n in checked if n is not None]  # every one, as none was refused
    wanted = sorted(set(normalised))
    now = utcnow()
    in_inventory: set[str] = set()
    free: set[str] = set()
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        in_inventory.update(
            session.scalars(select(InventoryNumber.e164_number).where(InventoryNumber.e164_number.in_(chunk)))
        )
        free.update(
            session.scalars(
                _available(now).with_only_columns(InventoryNumber.e164_number).where(
                    InventoryNumber.e164_number.in_(chunk)
                )
            )
        )
    return [
        (n, "AVAILABLE" if n in free else "TAKEN" if n in in_inventory else "NOT_IN_INVENTORY")
        for n in normalised
    ]


# --- taking a number


def _stock_and_reservation(session: Session, caller: Caller, e164: str) -> tuple[InventoryNumber, Number | None]:
    """The inventory row of `e164`, and the caller's own reservation of it if there is one.

    Refuses a number not in the inventory (NOT_FOUND), held by another
    workspace or aging after a release (ALREADY_EXISTS), or already the
    caller's in any state but RESERVED (FAILED_PRECONDITION).
    """
    stock = session.scalar(select(InventoryNumber).where(InventoryNumber.e164_number == e164))
    if stock is None:
        raise NotFound(f"The number {e164} is not in the inventory.")
    reclaim(session, e164, utcnow())
    holder = session.scalar(select(Number).where(Number.e164_number == e164))
    if holder is None:
        return stock, None
    if holder.workspace_id != caller.workspace_id:
        raise AlreadyExists(f"The number {e164} is held by another workspace.")
    if holder.state == "RELEASED":
        raise AlreadyExists(f"The number {e164} was released and is aging; it is not available yet.")
    if holder.state != "RESERVED":
        raise FailedPrecondition(f"The number {e164} is already yours, and {holder.state}.")
    return stock, holder


def acquire(
    session: Session,
    caller: Caller,
    e164_number: str,
    *,
    name: str,
    routing: Routing | None,
    settings: Settings,
    request_id: str,
) -> Number:
    v = Violations()
    e164 = validation.e164(v, "e164_number", e164_number)
    name = validation.text(v, "name", name, max_len=MAX_NAME)
    request = validation.request_id(v, request_id)
    routing, settings = checked_routing_and_settings(v, routing, settings)
    v.raise_if_any()
    assert e164 is not None  # else refused above
    earlier = by_request_id(session, Number, caller, request)
    if earlier is not None:
        return earlier
    stock, holder = _stock_and_reservation(session, caller, e164)
    if holder is not None:
        lifecycle.apply(holder, lifecycle.ACTIVATE)  # confirms the reservation
        number = holder
        number.name = name or number.name
        number.request_id = request
    else:
        number = new_number(
            caller, e164_number=e164, provider_ref=stock.provider_ref, name=name, from_inventory=True,
            request_id=request,
        )
    if routing is not None:
        apply_routing(number, routing)
    apply_settings(number, settings)
    if holder is not None:
        session.flush()
        return number
    return insert_once(session, number, caller, lambda: taken(e164))


def reserve(session: Session, caller: Caller, e164_number: str, hold: timedelta | None) -> Number:
    v = Violations()
    e164 = validation.e164(v, "e164_number", e164_number)
    hold = DEFAULT_HOLD if hold is None else hold
    if not MIN_HOLD <= hold <= MAX_HOLD:
        v.add("hold", f"must be between 1 second and 7 days, got {hold.total_seconds():g} seconds")
    v.raise_if_any()
    assert e164 is not None  # else refused above
    stock, holder = _stock_and_reservation(session, caller, e164)
    now = utcnow()
    if holder is not None:
        holder.reserve_expire_time = now + hold  # reserving again extends the hold
        holder.update_time = now
        session.flush()
        return holder
    number = new_number(
        caller, e164_number=e164, provider_ref=stock.provider_ref, from_inventory=True, state="RESERVED",
        reserve_expire_time=now + hold,
    )
    return insert_once(session, number, caller, lambda: taken(e164))
