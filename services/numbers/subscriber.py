"""Who a number is registered to (its subscriber) and where emergency services go for it (its E911
address): what each must be, and how they change.

Only what can be checked here is checked: required fields, the shape of postal codes for the
country, and that the address is in the number's country. Subscriber validation itself is done by
people (an operator records the outcome with `review_subscriber`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

import phonenumbers
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core import validation
from ..core.auth import Caller
from ..core.errors import FailedPrecondition, NotFound, Violations
from ..core.resources import check_etag
from ..persistence.base import utcnow
from .models import EmergencyAddress, Number, Subscriber
from .provisioning import dead, get_number

# Column sizes of number_subscribers and number_emergency_addresses.
MAX_FIRST_NAME = 128
MAX_LINE = 255
MAX_POSTCODE = 16
MAX_LOCALITY = 128
MAX_REGION = 128
MAX_REJECTION_REASON = 512

# --- Postal codes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PostalFormat:
    """A country's postal codes: their shape once spaces and hyphens are removed, and how they are written."""

    compact: str  # regular expression over upper-case ASCII letters and digits
    example: str
    separator_at: int | None = None  # where the written form has its separator; negative counts from the end
    separator: str = " "

    def written(self, compact: str) -> str:
        if self.separator_at is None:
            return compact
        at = self.separator_at if self.separator_at >= 0 else len(compact) + self.separator_at
        return f"{compact[:at]}{self.separator}{compact[at:]}" if 0 < at < len(compact) else compact


_ZIP = PostalFormat(r"\d{5}(?:\d{4})?", "94105", 5, "-")  # ZIP or ZIP+4
_UK_INWARD = r"\d[ABD-HJLNP-UW-Z]{2}"
_GB = PostalFormat(
    rf"GIR0AA|[A-PR-UWYZ](?:\d\d?|[A-HK-Y]\d\d?|\d[A-HJKPSTUW]|[A-HK-Y]\d[ABEHMNPRV-Y]){_UK_INWARD}", "SW1A 1AA", -3
)

POSTAL_FORMATS: dict[str, PostalFormat] = {
    "US": _ZIP, "PR": _ZIP, "VI": _ZIP, "GU": _ZIP, "AS": _ZIP, "MP": _ZIP,
    "CA": PostalFormat(r"[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z]\d[ABCEGHJ-NPRSTV-Z]\d", "K1A 0B1", 3),
    "GB": _GB,
    "GG": PostalFormat(rf"GY\d\d?{_UK_INWARD}", "GY1 1AA", -3),
    "JE": PostalFormat(rf"JE\d{_UK_INWARD}", "JE2 3AB", -3),
    "IM": PostalFormat(rf"IM\d\d?{_UK_INWARD}", "IM1 1AA", -3),
    "IE": PostalFormat(r"(?:[AC-FHKNPRTV-Y]\d\d|D6W)[0-9AC-FHKNPRTV-Y]{4}", "D02 X285", 3),  # Eircode
    "DE": PostalFormat(r"\d{5}", "10117"),
    "FR": PostalFormat(r"\d{5}", "75008"),
    "IT": PostalFormat(r"\d{5}", "00184"),
    "ES": PostalFormat(r"(?:0[1-9]|[1-4]\d|5[0-2])\d{3}", "28013"),
    "PT": PostalFormat(r"[1-9]\d{6}", "1100-148", 4, "-"),
    "NL": PostalFormat(r"[1-9]\d{3}(?!S[ADS])[A-Z]{2}", "1012 JS", 4),
    "BE": PostalFormat(r"[1-9]\d{3}", "1000"),
    "CH": PostalFormat(r"[1-9]\d{3}", "8001"),
    "AT": PostalFormat(r"[1-9]\d{3}", "1010"),
    "DK": PostalFormat(r"\d{4}", "1050"),
    "NO": PostalFormat(r"\d{4}", "0150"),
    "SE": PostalFormat(r"[1-9]\d{4}", "114 55", 3),
    "FI": PostalFormat(r"\d{5}", "00100"),
    "PL": PostalFormat(r"\d{5}", "00-950", 2, "-"),
    "AU": PostalFormat(r"\d{4}", "2000"),
    "NZ": PostalFormat(r"\d{4}", "6011"),
    "JP": PostalFormat(r"\d{7}", "100-0001", 3, "-"),
    "KR": PostalFormat(r"\d{5}", "03154"),
    "CN": PostalFormat(r"\d{6}", "100000"),
    "SG": PostalFormat(r"\d{6}", "018956"),
    "IN": PostalFormat(r"[1-9]\d{5}", "110001"),  # PIN
    "BR": PostalFormat(r"\d{8}", "01310-100", 5, "-"),  # CEP
    "MX": PostalFormat(r"\d{5}", "06600"),
    "ZA": PostalFormat(r"\d{4}", "8001"),
}
_COMPILED = {country: re.compile(f.compact, re.ASCII) for country, f in POSTAL_FORMATS.items()}
# Countries not in the table: 2 to 10 letters, digits, spaces or hyphens, starting and ending with one of the first two.
_ANY_POSTAL_CODE = re.compile(r"[A-Z0-9][A-Z0-9 \-]{0,8}[A-Z0-9]", re.ASCII)


def check_postal_code(country: str, value: str) -> tuple[str, str | None]:
    """`value` as postal codes of `country` are written, and what is wrong with its shape (None when nothing).

    Case, spaces and hyphens do not matter ("sw1a1aa" is "SW1A 1AA", "941051234" is "94105-1234").
    The problem reads after the value: f"{value!r} {problem}".
    """
    tidy = " ".join(value.upper().split())
    postal_format = POSTAL_FORMATS.get(country)
    if postal_format is None:
        if _ANY_POSTAL_CODE.fullmatch(tidy):
            return tidy, None
        return tidy, "is not a postal code: use 2 to 10 letters, digits, spaces or hyphens"
    compact = re.sub(r"[\s\-]", "", tidy)
    if _COMPILED[country].fullmatch(compact):
        return postal_format.written(compact), None
    return tidy, f"is not a postal code of {country}, e.g. {postal_format.example!r}"


# --- Regions (states, provinces, territories) where an address needs one ------------------------

_REGIONS: dict[str, tuple[str, dict[str, str]]] = {
    "US": ("state or territory", {
        "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
        "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia", "FL": "Florida",
        "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois", "IN": "Indiana", "IA": "Iowa",
        "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana", "ME": "Maine", "MD": "Maryland",
        "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota", "MS": "Mississippi", "MO": "Missouri",
        "MT": "Montana", "NE": "Nebraska", "NV": "Nevada", "NH": "New Hampshire", "NJ": "New Jersey",
        "NM": "New Mexico", "NY": "New York", "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio",
        "OK": "Oklahoma", "OR": "Oregon", "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina",
        "SD": "South Dakota", "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont",
        "VA": "Virginia", "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
        "AS": "American Samoa", "GU": "Guam", "MP": "Northern Mariana Islands", "PR": "Puerto Rico",
        "VI": "U.S. Virgin Islands",
    }),
    "CA": ("province or territory", {
        "AB": "Alberta", "BC": "British Columbia", "MB": "Manitoba", "NB": "New Brunswick",
        "NL": "Newfoundland and Labrador", "NS": "Nova Scotia", "NT": "Northwest Territories", "NU": "Nunavut",
        "ON": "Ontario", "PE": "Prince Edward Island", "QC": "Quebec", "SK": "Saskatchewan", "YT": "Yukon",
    }),
    "AU": ("state or territory", {
        "ACT": "Australian Capital Territory", "NSW": "New South Wales", "NT": "Northern Territory",
        "QLD": "Queensland", "SA": "South Australia", "TAS": "Tasmania", "VIC": "Victoria",
        "WA": "Western Australia",
    }),
}
_REGION_CODES = {
    country: {**{code.casefold(): code for code in names}, **{name.casefold(): code for code, name in names.items()}}
    for country, (_, names) in _REGIONS.items()
}
_REGION_CODES["CA"]["québec"] = "QC"  # as Quebec itself writes it


def check_region(country: str, value: str) -> tuple[str, str | None]:
    """The region as its code where the country's regions are known ("California" is "CA"), and what is wrong."""
    value = " ".join(value.split())
    if country not in _REGIONS:
        return value, None
    code = _REGION_CODES[country].get(value.casefold())
    if code is not None:
        return code, None
    kind, names = _REGIONS[country]
    code, name = next(iter(names.items()))
    return value, f"is not a {kind} of {country}; use its code or name, e.g. {code!r} or {name!r}"


# --- Countries ----------------------------------------------------------------------------------

# Numbers of these places (their own regions in libphonenumber) are in the second country's system
# too: an address there may name either.
_ALSO_COUNTRY = {"PR": "US", "VI": "US", "GU": "US", "AS": "US", "MP": "US", "GG": "GB", "JE": "GB", "IM": "GB"}


def number_country(number: Number) -> str:
    """The ISO 3166-1 country of the number ("001" for non-geographic numbers such as +800, "ZZ" for
    one that libphonenumber places in no region)."""
    return phonenumbers.region_code_for_number(phonenumbers.parse(number.e164_number)) or phonenumbers.UNKNOWN_REGION


def _in_country_of(number_region: str, country: str) -> bool:
    return country in (number_region, _ALSO_COUNTRY.get(number_region))


# --- Subscriber -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriberDetails:
    """What UpdateSubscriber changes (UK PBX API's subscriber block); None leaves a field as it is."""

    first_name: str | None = None
    name: str | None = None
    address1: str | None = None
    address2: str | None = None
    address3: str | None = None
    address4: str | None = None
    postcode: str | None = None


_SUBSCRIBER_LIMITS = {"first_name": MAX_FIRST_NAME, "postcode": MAX_POSTCODE}
_SUBSCRIBER_REQUIRED = ("name", "address1", "postcode")


def update_subscriber(
    session: Session, caller: Caller, ref: str, details: SubscriberDetails, etag: str
) -> Number:
    """Changes the fields of the number's subscriber that `details` sets (None leaves one as it is) and
    submits it for validation (VALIDATION_PENDING). The subscriber as changed must be complete."""
    number = get_number(session, caller, ref)  # first: the postcode is checked against its country
    current = number.subscriber
    v = Violations()
    values = {}
    for f in fields(SubscriberDetails):
        given = getattr(details, f.name)
        value = given if given is not None else (getattr(current, f.name) if current is not None else "")
        values[f.name] = validation.text(
            v, f.name, value, max_len=_SUBSCRIBER_LIMITS.get(f.name, MAX_LINE), required=f.name in _SUBSCRIBER_REQUIRED
        )
    if values["postcode"] and len(values["postcode"]) <= MAX_POSTCODE:
        given_postcode = values["postcode"]
        values["postcode"], problem = check_postal_code(number_country(number), given_postcode)
        if problem:
            v.add("postcode", f"{given_postcode!r} {problem}")
    v.raise_if_any()
    check_etag(number, etag)
    now = utcnow()
    if number.subscriber is None:
        number.subscriber = Subscriber()
    subscriber = number.subscriber
    for name, value in values.items():
        setattr(subscriber, name, value)
    subscriber.status = "VALIDATION_PENDING"
    subscriber.rejection_reason = ""
    subscriber.update_time = now
    number.update_time = now  # every change moves the etag
    session.flush()
    return number


def review_subscriber(session: Session, ref: str, approve: bool, rejection_reason: str) -> Number:
    """Records an operator's review of a pending subscriber, on any workspace's number."""
    v = Violations()
    if not ref:
        v.add("ref", "is required")
    reason = validation.text(
        v, "rejection_reason", rejection_reason, max_len=MAX_REJECTION_REASON, required=not approve
    )
    if approve and reason:
        v.add("rejection_reason", "must be empty when approving")
    v.raise_if_any()
    now = utcnow()
    number = session.scalar(select(Number).where(Number.ref == ref, ~dead(now)))
    if number is None:
        raise NotFound(f"No number has the ref {ref!r}.")
    subscriber = number.subscriber
    if subscriber is None:
        raise FailedPrecondition(f"The number {number.e164_number} has no subscriber to review.")
    if subscriber.status != "VALIDATION_PENDING":
        raise FailedPrecondition(
            f"The subscriber of {number.e164_number} is {subscriber.status}, not VALIDATION_PENDING: "
            "there is nothing to review until it is updated."
        )
    subscriber.status = "VALIDATED" if approve else "REJECTED"
    subscriber.rejection_reason = reason
    subscriber.update_time = now
    number.update_time = now
    session.flush()
    return number


# --- Emergency address ------------------------------------------------------------------------


@dataclass(frozen=True)
class CivicAddress:
    """An emergency (E911) address as a caller sends it."""

    street_address: str = ""
    extended_address: str = ""
    locality: str = ""
    region: str = ""
    postal_code: str = ""
    country: str = ""


_ADDRESS_LIMITS = {"locality": MAX_LOCALITY, "region": MAX_REGION, "postal_code": MAX_POSTCODE}
_ADDRESS_REQUIRED = ("street_address", "locality", "postal_code")
COUNTRIES_WITH_REGIONS = ("US", "CA", "AU")


def _checked_address(v: Violations, address: CivicAddress | None) -> CivicAddress:
    """The address with every field trimmed and the country in upper case; missing or oversized fields go to `v`."""
    if address is None:
        v.add("address", "is required")
        return CivicAddress()
    values = {
        f.name: validation.text(
            v, f"address.{f.name}", getattr(address, f.name),
            max_len=_ADDRESS_LIMITS.get(f.name, MAX_LINE), required=f.name in _ADDRESS_REQUIRED,
        )
        for f in fields(CivicAddress)
        if f.name != "country"
    }
    country = address.country.strip().upper()
    if not country:
        v.add("address.country", "is required")
    elif not (len(country) == 2 and country.isascii() and country.isalpha()):
        v.add("address.country", f"{address.country!r} is not an ISO 3166-1 alpha-2 country code, e.g. 'US'")
    values["country"] = country
    if values["country"] in COUNTRIES_WITH_REGIONS and not values["region"]:
        v.add("address.region", f"is required in {values['country']}")
    return CivicAddress(**values)


def _judged(address: CivicAddress, number: Number) -> tuple[CivicAddress, list[str]]:
    """The address normalised, and every local check it fails, one sentence each."""
    problems = []
    postal_code, problem = check_postal_code(address.country, address.postal_code)
    if problem:
        problems.append(f"The postal code {address.postal_code!r} {problem}.")
    region, problem = check_region(address.country, address.region)
    if problem:
        problems.append(f"The region {address.region!r} {problem}.")
    number_region = number_country(number)
    if not _in_country_of(number_region, address.country):
        where = "is not in any country" if number_region == "001" else f"is in {number_region}"
        problems.append(
            f"The address is in {address.country} but the number {number.e164_number} {where}: "
            "emergency calls are answered in the number's country."
        )
    normalised = CivicAddress(**{**vars(address), "postal_code": postal_code, "region": region})
    return normalised, problems


def set_emergency_address(
    session: Session, caller: Caller, ref: str, address: CivicAddress | None, etag: str
) -> Number:
    """Stores the number's emergency address with what the local checks found, and turns emergency calling off."""
    v = Violations()
    address = _checked_address(v, address)
    v.raise_if_any()
    number = get_number(session, caller, ref, etag)
    address, problems = _judged(address, number)
    if number.emergency_address is None:
        number.emergency_address = EmergencyAddress()
    stored = number.emergency_address
    for name, value in vars(address).items():
        setattr(stored, name, value)
    stored.status = "INVALID" if problems else "VALID"
    stored.problems = problems
    number.emergency_enabled = False  # a new address is enabled deliberately, never carried over
    number.update_time = utcnow()
    session.flush()
    return number


def enable_emergency(session: Session, caller: Caller, ref: str, enabled: bool, etag: str) -> Number:
    """Turns emergency calling on (only with a VALID address) or off. Asking for the current setting changes nothing."""
    number = get_number(session, caller, ref, etag)
    if enabled:
        address = number.emergency_address
        if address is None:
            raise FailedPrecondition(
                f"The number {number.e164_number} has no emergency address; set one with SetEmergencyAddress first."
            )
        if address.status != "VALID":
            raise FailedPrecondition(
                f"The emergency address of {number.e164_number} is INVALID, so emergency calling cannot be "
                f"enabled until a corrected address is set: {' '.join(address.problems)}"
            )
    if number.emergency_enabled != enabled:
        number.emergency_enabled = enabled
        number.update_time = utcnow()
        session.flush()
    return number
