"""Toll-fraud guards: the countries and costly number types a workspace's calls may dial, and how many of
its calls may run at once, from its CallSettings.

A destination is classified by libphonenumber (`phonenumbers`): its region and its type. CreateCall
reads the settings, checks the destination and counts the running calls in the transaction that
stores the call, under a per-workspace lock, so two creates racing at the cap cannot both pass.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from ..core import config
from ..core.errors import PermissionDenied, ResourceExhausted, Violations
from ..persistence.base import table_of, utcnow
from ..persistence.locks import lock_until_commit
from . import states
from .models import Call, CallSettings

# What CostlyNumberType names, without its prefix: libphonenumber's two costly types, and the numbers
# of a global network (its region "001") that are not free (+800).
PREMIUM_RATE, SHARED_COST, GLOBAL_NETWORK = "PREMIUM_RATE", "SHARED_COST", "GLOBAL_NETWORK"
COSTLY_TYPES = (PREMIUM_RATE, SHARED_COST, GLOBAL_NETWORK)
_COSTLY_KINDS = {PhoneNumberType.PREMIUM_RATE: PREMIUM_RATE, PhoneNumberType.SHARED_COST: SHARED_COST}
_DESCRIBED = {PREMIUM_RATE: "premium-rate", SHARED_COST: "shared-cost", GLOBAL_NETWORK: "global-network"}
_GLOBAL_REGION = "001"
COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS)  # ISO 3166-1 alpha-2, as libphonenumber knows them
MAX_COUNTRIES = 250
MAX_CONCURRENT = 1_000_000


@dataclass(frozen=True)
class Destination:
    """An E.164 destination as the guards see it."""

    number: str
    country: str  # ISO 3166-1 alpha-2; "" for a number of a global network
    costly: str | None  # one of COSTLY_TYPES, or None for an ordinary number


@functools.lru_cache(maxsize=4096)
def destination_of(party: str) -> Destination | None:
    """`party` (E.164 or a SIP URI, as checked_party left it) classified; None for a SIP URI, which is
    sent to its own host rather than through the carrier. Cached: a workspace dials the same numbers."""
    if not party.startswith("+"):
        return None
    parsed = phonenumbers.parse(party, None)
    region = phonenumbers.region_code_for_number(parsed) or ""
    kind = phonenumbers.number_type(parsed)
    costly = _COSTLY_KINDS.get(kind)
    if costly is None and region == _GLOBAL_REGION and kind != PhoneNumberType.TOLL_FREE:
        costly = GLOBAL_NETWORK
    return Destination(party, "" if region == _GLOBAL_REGION else region, costly)


@dataclass(frozen=True)
class Guards:
    """A workspace's settings as the checks read them."""

    allowed_countries: Sequence[str] = ()
    allowed_costly_types: Sequence[str] = ()
    max_concurrent_calls: int = 0

    @property
    def cap(self) -> int:
        return effective_cap(self.max_concurrent_calls)


def effective_cap(max_concurrent_calls: int) -> int:
    """The cap in force: the workspace's, else the deployment's; 0: none."""
    return max_concurrent_calls or config.settings().calls_max_concurrent


# Read on every CreateCall: Core selects of the tables (not of the ORM's entities), whose execution costs less.
_settings = table_of(CallSettings).c
_GUARDS = select(_settings.allowed_countries, _settings.allowed_costly_types, _settings.max_concurrent_calls).where(
    _settings.workspace_id == bindparam("workspace_id")
)
_calls = table_of(Call).c
_RUNNING = (
    select(func.count())
    .select_from(table_of(Call))
    .where(_calls.workspace_id == bindparam("workspace_id"), _calls.status.in_(sorted(states.ACTIVE)))
)


def guards_of(session: Session, workspace_id: int) -> Guards:
    row = session.connection().execute(_GUARDS, {"workspace_id": workspace_id}).first()
    return Guards() if row is None else Guards(*row)


def check_destination(guards: Guards, destination: Destination | None, field: str = "destination") -> None:
    """PERMISSION_DENIED, naming the setting, for a destination in a country or of a costly type the
    workspace does not allow."""
    if destination is None:
        return
    number = destination.number
    if guards.allowed_countries and destination.country not in guards.allowed_countries:
        where = (f"is in {destination.country}" if destination.country
                 else "is a number of a global network, in no country")
        raise PermissionDenied(
            f"{field} {number} {where}, which this workspace's call settings do not allow "
            f"(allowed_countries: {', '.join(guards.allowed_countries)})."
        )
    if destination.costly is not None and destination.costly not in guards.allowed_costly_types:
        raise PermissionDenied(
            f"{field} {number} is a {_DESCRIBED[destination.costly]} number, which this workspace's call "
            f"settings do not allow (allowed_costly_types: add COSTLY_NUMBER_TYPE_{destination.costly})."
        )


def check_new_call(session: Session, workspace_id: int, destination: Destination | None) -> Guards:
    """The guards of a call about to be stored, in the transaction that stores it: its destination, then
    the cap. With a cap, the workspace's writers queue on its lock until each commits, so the count
    includes every call stored before this one. The guards it checked, for the call's later parties."""
    guards = guards_of(session, workspace_id)
    check_destination(guards, destination)
    cap = guards.cap
    if not cap:
        return guards
    lock_until_commit(session, f"voxplane.calls.cap:{workspace_id}")
    running = session.connection().execute(_RUNNING, {"workspace_id": workspace_id}).scalar_one()
    if running >= cap:
        which = (f"max_concurrent_calls {cap}" if guards.max_concurrent_calls
                 else f"the deployment's VOXPLANE_CALLS_MAX_CONCURRENT {cap}, max_concurrent_calls being 0")
        raise ResourceExhausted(
            f"The workspace's running calls ({running}) are at its cap on concurrent calls ({which}); "
            "end one, or raise max_concurrent_calls in the call settings."
        )
    return guards


# --- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingsUpdate:
    """The settings an UpdateCallSettings changes; None: left as they are. Costly types by name, or the
    number the request had when it is not a CostlyNumberType (refused)."""

    allowed_countries: Sequence[str] | None = None
    allowed_costly_types: Sequence[str | int] | None = None
    max_concurrent_calls: int | None = None


def _defaults(workspace_id: int) -> CallSettings:
    return CallSettings(workspace_id=workspace_id, allowed_countries=[], allowed_costly_types=[], max_concurrent_calls=0)


def settings_of(session: Session, workspace_id: int) -> CallSettings:
    return session.get(CallSettings, workspace_id) or _defaults(workspace_id)


def _checked_countries(v: Violations, countries: Sequence[str]) -> list[str]:
    if len(countries) > MAX_COUNTRIES:
        v.add("allowed_countries", f"must have at most {MAX_COUNTRIES} countries, got {len(countries)}")
        return []
    checked = set()
    for i, country in enumerate(countries):
        code = country.strip().upper()
        if code not in COUNTRIES:
            v.add(f"allowed_countries[{i}]", f"{country[:80]!r} is not an ISO 3166-1 alpha-2 country code, e.g. 'US'")
        checked.add(code)
    return sorted(checked)


def _checked_types(v: Violations, kinds: Sequence[str | int]) -> list[str]:
    for i, kind in enumerate(kinds):
        if kind not in COSTLY_TYPES:
            v.add(f"allowed_costly_types[{i}]",
                  f"must be one of {', '.join(f'COSTLY_NUMBER_TYPE_{t}' for t in COSTLY_TYPES)}, got {kind}")
    return sorted({str(kind) for kind in kinds})


def update_settings(session: Session, workspace_id: int, update: SettingsUpdate) -> CallSettings:
    v = Violations()
    countries = kinds = None
    if update.allowed_countries is not None:
        countries = _checked_countries(v, update.allowed_countries)
    if update.allowed_costly_types is not None:
        kinds = _checked_types(v, update.allowed_costly_types)
    cap = update.max_concurrent_calls
    if cap is not None and not 0 <= cap <= MAX_CONCURRENT:
        v.add("max_concurrent_calls", f"must be 0 (the deployment's default) to {MAX_CONCURRENT:,}, got {cap}")
    v.raise_if_any()
    found = session.get(CallSettings, workspace_id, with_for_update=True)
    if found is None:
        found = _defaults(workspace_id)
        session.add(found)
    if countries is not None:
        found.allowed_countries = countries
    if kinds is not None:
        found.allowed_costly_types = kinds
    if cap is not None:
        found.max_concurrent_calls = cap
    found.update_time = utcnow()
    session.flush()
    return found
