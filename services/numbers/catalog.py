"""What numbers are: type and country (from libphonenumber), the deployment's classifiers,
locality (geocoder, carrier and time zone data), and the platform's feature access codes."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers
from phonenumbers import PhoneNumberType, phonenumberutil, shortnumberinfo

from ..core import config, validation
from ..core.errors import InvalidArgument, Violations

MAX_NUMBER_LEN = 64
MAX_LOCALITY_NUMBERS = 100
CLASSIFIERS_ENV = "VOXPLANE_CLASSIFIERS"

# libphonenumber's types by the contract's NumberType names (without the NUMBER_TYPE_ prefix).
_TYPE_NAMES = {
    PhoneNumberType.FIXED_LINE: "FIXED_LINE",
    PhoneNumberType.MOBILE: "MOBILE",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "FIXED_LINE_OR_MOBILE",
    PhoneNumberType.TOLL_FREE: "TOLL_FREE",
    PhoneNumberType.PREMIUM_RATE: "PREMIUM_RATE",
    PhoneNumberType.SHARED_COST: "SHARED_COST",
    PhoneNumberType.VOIP: "VOIP",
    PhoneNumberType.PERSONAL_NUMBER: "PERSONAL_NUMBER",
    PhoneNumberType.PAGER: "PAGER",
    PhoneNumberType.UAN: "UAN",
    PhoneNumberType.VOICEMAIL: "VOICEMAIL",
    PhoneNumberType.UNKNOWN: "UNKNOWN",
}


class SettingsError(ValueError):
    """The deployment's catalog settings (classifier file, home region) cannot be used."""


# --- classifiers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Classifier:
    """A Kazoo-style rule: numbers whose E.164 (or short-code digits) `pattern` matches are `name`."""

    name: str
    friendly_name: str
    pattern: str
    regex: re.Pattern[str] = field(compare=False, repr=False)

    @classmethod
    def of(cls, name: str, friendly_name: str, pattern: str) -> Classifier:
        return cls(name, friendly_name, pattern, re.compile(pattern))


# Kazoo's default classifiers (knm_converters), tried in this order; the first match names the number.
DEFAULT_CLASSIFIERS = (
    Classifier.of("tollfree_us", "US Toll Free", r"^\+1((?:800|888|877|866|855|844|833)\d{7})$"),
    Classifier.of("toll_us", "US Toll", r"^\+1(900\d{7})$"),
    Classifier.of("emergency", "Emergency Dispatcher", r"^(911|112|999)$"),
    Classifier.of(
        "caribbean",
        "Caribbean",
        r"^\+1((?:684|264|268|242|246|441|284|345|767|809|829|849|473|671|876|664|670|787|939|869|758|784|721|868"
        r"|649|340)\d{7})$",
    ),
    Classifier.of("did_us", "US DID", r"^\+1([2-9][0-9]{2}[2-9][0-9]{6})$"),
    Classifier.of("international", "International", r"^\+([2-9]\d+)$"),  # outside the NANP
    Classifier.of("unknown", "Unknown", r"^(.*)$"),
)


def load_classifiers(path: str | Path) -> tuple[Classifier, ...]:
    """The classifiers of a JSON file: a list of {"name", "friendly_name", "pattern"}, in the order tried.

    Raises SettingsError naming the file and the first problem found.
    """

    def problem(what: str) -> SettingsError:
        return SettingsError(f"{CLASSIFIERS_ENV} file {str(path)!r}: {what}")

    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise problem(f"cannot be read ({error.strerror or error})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise problem(f"is not valid JSON ({error})") from None
    if not isinstance(items, list):
        raise problem('must hold a JSON list of {"name", "friendly_name", "pattern"} objects')
    classifiers: list[Classifier] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise problem(f"item {i} is not an object")
        for key in ("name", "friendly_name", "pattern"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise problem(f"item {i} needs {key!r}, a non-empty string")
        if any(c.name == item["name"] for c in classifiers):
            raise problem(f"item {i}: the name {item['name']!r} is used twice")
        name, pattern = item["name"], item["pattern"]
        try:
            classifiers.append(Classifier.of(name, item["friendly_name"], pattern))
        except re.error as error:
            raise problem(f"item {i} ({name!r}): the pattern {pattern} is not a regular expression ({error})") from None
    return tuple(classifiers)


def classifiers() -> tuple[Classifier, ...]:
    """The deployment's classifiers: the file named by VOXPLANE_CLASSIFIERS, else Kazoo's defaults."""
    return _classifiers_of(config.settings().classifiers)


@functools.cache
def _classifiers_of(path: str) -> tuple[Classifier, ...]:
    return load_classifiers(path) if path else DEFAULT_CLASSIFIERS


def matching(value: str, rules: Sequence[Classifier]) -> tuple[str, ...]:
    """The name of the first classifier that matches `value`, as Kazoo classifies; () when none does."""
    return next(((rule.name,) for rule in rules if rule.regex.search(value)), ())


def check_settings() -> None:
    """Loads what the catalog needs from the environment, so bad settings stop a server from starting."""
    classifiers()
    home = config.settings().home_region
    if home not in phonenumbers.SUPPORTED_REGIONS:
        raise SettingsError(f"VOXPLANE_HOME_REGION {home!r} is not a region with a numbering plan, e.g. 'US' or 'GB'")


# --- classification ------------------------------------------------------------------------


@dataclass(frozen=True)
class Classification:
    type: str  # a NumberType name without its prefix: "MOBILE", "EMERGENCY", "UNSPECIFIED"...
    region_code: str
    country_code: int
    international: bool
    classifiers: tuple[str, ...]


@dataclass(frozen=True)
class ClassifiedNumber:
    number: str  # E.164, or the digits of a short code
    national_format: str
    international_format: str  # empty for a short code: it cannot be dialled from abroad
    classification: Classification


def classification(e164: str) -> Classification:
    """What a stored E.164 number is. Never raises: a number that no longer parses is UNSPECIFIED."""
    settings = config.settings()
    return _classification(e164, settings.home_region, settings.classifiers)


# What people put between the digits of an international number ("+1 (415) 555-0100"), which
# `phonenumbers.parse` drops too. "(0)" is not among them: it is a trunk prefix parse may strip.
_PUNCTUATION = str.maketrans("", "", " -.()/\u00a0")


def checked_e164(v: Violations, field: str, value: str) -> str | None:
    """`validation.e164`, with the same answers and messages, several times faster on E.164 input.

    A number in E.164 form (nearly all of a bulk import), or one that is E.164 once the usual
    punctuation is taken out, skips parsing, and its validity is its classification's, which the
    Number it becomes then finds cached.
    """
    if _as_written(value) is not None and classification(value).type != "UNSPECIFIED":
        return value
    compact = value.strip().translate(_PUNCTUATION)
    if (compact != value and "(0" not in value and _as_written(compact) is not None
            and classification(compact).type != "UNSPECIFIED"):
        return compact
    return validation.e164(v, field, value)


@functools.cache
def _parsing_prefix(country_code: int) -> tuple[bool, re.Pattern[str] | None]:
    """(metadata known, the national prefix `phonenumbers.parse` strips) of a country calling code."""
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None:
        return False, None
    prefix = metadata.national_prefix_for_parsing
    return True, re.compile(prefix) if prefix else None


def _as_written(value: str) -> phonenumbers.PhoneNumber | None:
    """The number `value` is when it is "+<digits>" that `phonenumbers.parse` would read unchanged.

    Parsing text costs more than classifying the number; anything unusual (a leading zero, a national
    prefix `parse` might strip) says None, and gets parsed.
    """
    digits = value[1:]
    if value[:1] != "+" or not (digits.isascii() and digits.isdigit()) or len(digits) > 15 or digits[0] == "0":
        return None
    for size in (1, 2, 3):  # country calling codes are prefix-free, as `parse` reads them
        country_code = int(digits[:size])
        if country_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[size:]
    known, prefix = _parsing_prefix(country_code)
    if not known or len(national) < 2 or national[0] == "0" or (prefix is not None and prefix.match(national)):
        return None
    return phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))


def _region_and_type(number: phonenumbers.PhoneNumber) -> tuple[str, int]:
    """`region_code_for_number` and `number_type` at once; the type is UNKNOWN exactly when the number
    is not valid (`is_valid_number`).

    libphonenumber's three answers each find the region again, and finding a region of a shared
    country code (all of the NANP's +1) already tests the number's type: asked separately they cost
    several times this, and a bulk import asks them of every number.
    """
    country_code = number.country_code
    if country_code is None:  # only a PhoneNumber made by hand lacks one: it has no region
        return "", PhoneNumberType.UNKNOWN
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ())
    national = phonenumbers.national_significant_number(number)
    if len(regions) == 1:  # the country code's own region, or "001" for a non-geographic one
        metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(country_code, regions[0])
        return regions[0], _number_type(national, metadata) if metadata else PhoneNumberType.UNKNOWN
    for region in regions:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region, None)
        if metadata is None:
            continue
        if metadata.leading_digits is not None:
            if re.match(metadata.leading_digits, national):
                return region, _number_type(national, metadata)
        elif (kind := _number_type(national, metadata)) != PhoneNumberType.UNKNOWN:
            return region, kind
    return "", PhoneNumberType.UNKNOWN


# libphonenumber's type test for a national number against a region's metadata: its only entry point
# that takes metadata instead of finding the region again (see _region_and_type).
_number_type = phonenumberutil._number_type_helper


# Called for every Number a response carries (up to 1,000 per page), and by checked_e164 just before
# a batch's Numbers are made: cached for both. A page's worth, not more: more only costs memory.
@functools.lru_cache(maxsize=4096)
def _classification(e164: str, home: str, classifiers_file: str) -> Classification:
    parsed = _as_written(e164)
    if parsed is None:
        try:
            parsed = phonenumbers.parse(e164, None)
        except phonenumbers.NumberParseException:
            return Classification("UNSPECIFIED", "", 0, False, matching(e164, _classifiers_of(classifiers_file)))
    region, kind = _region_and_type(parsed)
    return Classification(
        type="UNSPECIFIED" if kind == PhoneNumberType.UNKNOWN else _TYPE_NAMES[kind],
        region_code=region,
        country_code=parsed.country_code or 0,
        international=bool(region) and region != home,
        classifiers=matching(e164, _classifiers_of(classifiers_file)),
    )


def classify(number: str, region_code: str = "") -> ClassifiedNumber:
    """Classifies a number given as E.164, in international or national form (read in `region_code`,
    default the home region), or a short code of the region such as 911 or 112."""
    v = Violations()
    text = number.strip()
    region = region_code.strip().upper() or config.settings().home_region
    if not text:
        v.add("number", "is required")
    elif len(text) > MAX_NUMBER_LEN:
        v.add("number", f"must be at most {MAX_NUMBER_LEN} characters, got {len(text)}")
    if region not in phonenumbers.SUPPORTED_REGIONS:
        v.add("region_code", f"{region_code!r} is not a region with a numbering plan, e.g. 'US' or 'GB'")
    v.raise_if_any()
    home = config.settings().home_region
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is not None and phonenumbers.is_valid_number(parsed):
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        return ClassifiedNumber(
            number=e164,
            national_format=phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL),
            international_format=phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
            classification=classification(e164),
        )
    if parsed is not None and text.isdigit():
        short = _short_code(phonenumbers.normalize_digits_only(text), parsed, region, home)
        if short is not None:
            return short
    if text.startswith("+"):
        raise InvalidArgument.of("number", f"{number!r} is not a valid phone number")
    raise InvalidArgument.of("number", f"{number!r} is neither a valid phone number nor a short code of {region}")


def _short_code(digits: str, parsed: phonenumbers.PhoneNumber, region: str, home: str) -> ClassifiedNumber | None:
    if shortnumberinfo.is_emergency_number(digits, region):
        kind = "EMERGENCY"
    elif shortnumberinfo.is_valid_short_number_for_region(parsed, region):
        kind = "SHORT_CODE"
    else:
        return None
    found = Classification(
        type=kind,
        region_code=region,
        country_code=phonenumbers.country_code_for_region(region),
        international=region != home,
        classifiers=matching(digits, classifiers()),
    )
    return ClassifiedNumber(number=digits, national_format=digits, international_format="", classification=found)


# --- locality ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Locality:
    e164_number: str
    region_code: str
    description: str  # region or city; often the country for mobile numbers, or empty
    carrier: str  # the carrier the number was first assigned to, or empty
    time_zones: tuple[str, ...]


def localities(numbers: Sequence[str]) -> list[Locality]:
    """Where each of 1 to 100 numbers (any form with a country code) is, in the request's order."""
    v = Violations()
    if not numbers:
        v.add("numbers", f"give 1 to {MAX_LOCALITY_NUMBERS} numbers")
    elif len(numbers) > MAX_LOCALITY_NUMBERS:
        v.add("numbers", f"must be at most {MAX_LOCALITY_NUMBERS} numbers, got {len(numbers)}")
    v.raise_if_any()
    e164s = [validation.e164(v, f"numbers[{i}]", number) for i, number in enumerate(numbers)]
    v.raise_if_any()
    return [_locality(e164) for e164 in e164s if e164]


@functools.lru_cache(maxsize=4096)
def _locality(e164: str) -> Locality:
    # Imported here: libphonenumber's geocoder and carrier data take ~120 MB once loaded, which a
    # server that never answers a locality question (the SIP edge's lookups) should not pay for.
    from phonenumbers import carrier, geocoder, timezone

    parsed = phonenumbers.parse(e164, None)
    return Locality(
        e164_number=e164,
        region_code=phonenumbers.region_code_for_number(parsed) or "",
        description=geocoder.description_for_number(parsed, "en"),
        carrier=carrier.name_for_number(parsed, "en"),
        # libphonenumber says "Etc/Unknown" when it does not know, which is no IANA zone.
        time_zones=tuple(z for z in timezone.time_zones_for_number(parsed) if z != timezone.UNKNOWN_TIMEZONE),
    )


# --- access codes --------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessCode:
    code: str  # `{number}` stands for digits the caller adds
    description: str


ACCESS_CODES = (
    AccessCode("*55", "Voicemail: opens the mailbox of the extension you dial from, without asking for it."),
    AccessCode("*56", "Voicemail: asks for a mailbox number and its PIN, whichever extension you dial from."),
    AccessCode("*10", "Reads out the internal caller ID of the extension you dial from."),
    AccessCode("*50", "Plays the music callers hear while on hold."),
    AccessCode("*30*{number}", "Pages the extension or call group {number}; phones set to auto-answer pick up."),
    AccessCode("*31*{number}", "Calls {number} with your caller ID withheld."),
    AccessCode("*32*{number}", "Calls {number} showing your caller ID, when your account withholds it by default."),
    AccessCode(
        "*21*{number}",
        "Forwards calls to the extension you dial from to {number}, dialled as you would dial it from there.",
    ),
    AccessCode("*21", "Turns call forwarding off."),
    AccessCode("*22", "Reads out where calls to your extension are forwarded, if anywhere."),
    AccessCode("*8", "Answers a phone ringing in your pickup group."),
    AccessCode("*01", "Starts an echo test, to check that your audio works both ways."),
)
