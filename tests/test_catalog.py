"""What numbers are: ClassifyNumber, ListClassifiers, GetNumberLocality, ListAccessCodes,
the classification carried by every Number, and the operator's classifier file."""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading

import phonenumbers
import pytest

from voxplane import InvalidArgumentError, Numbers, UnauthenticatedError
from voxplane.numbers.v1 import numbers_pb2 as pb
from voxplane.services.core import validation
from voxplane.services.core.auth import Role
from voxplane.services.core.errors import Violations
from voxplane.services.numbers import catalog
from voxplane.services.numbers.servicer import NumbersServicer

T = pb.NumberType

# number as sent, region_code sent, E.164 back, type, region, country code, classifiers (home region US)
CLASSIFIED = [
    ("+14155552671", "", "+14155552671", T.NUMBER_TYPE_FIXED_LINE_OR_MOBILE, "US", 1, ["did_us"]),
    ("(415) 555-2671", "", "+14155552671", T.NUMBER_TYPE_FIXED_LINE_OR_MOBILE, "US", 1, ["did_us"]),
    ("+1 800 275 2273", "", "+18002752273", T.NUMBER_TYPE_TOLL_FREE, "US", 1, ["tollfree_us"]),
    ("1-900-234-5678", "US", "+19002345678", T.NUMBER_TYPE_PREMIUM_RATE, "US", 1, ["toll_us"]),
    ("+14162223333", "", "+14162223333", T.NUMBER_TYPE_FIXED_LINE_OR_MOBILE, "CA", 1, ["did_us"]),
    ("+18765551234", "", "+18765551234", T.NUMBER_TYPE_MOBILE, "JM", 1, ["caribbean"]),
    ("01224 901769", "gb", "+441224901769", T.NUMBER_TYPE_FIXED_LINE, "GB", 44, ["international"]),
    ("011 44 1224 901769", "", "+441224901769", T.NUMBER_TYPE_FIXED_LINE, "GB", 44, ["international"]),
    ("+447400123456", "", "+447400123456", T.NUMBER_TYPE_MOBILE, "GB", 44, ["international"]),
    ("+448001234567", "", "+448001234567", T.NUMBER_TYPE_TOLL_FREE, "GB", 44, ["international"]),
    ("+445612345678", "", "+445612345678", T.NUMBER_TYPE_VOIP, "GB", 44, ["international"]),
    ("+447012345678", "", "+447012345678", T.NUMBER_TYPE_PERSONAL_NUMBER, "GB", 44, ["international"]),
    ("+447640123456", "", "+447640123456", T.NUMBER_TYPE_PAGER, "GB", 44, ["international"]),
    ("+445512345678", "", "+445512345678", T.NUMBER_TYPE_UAN, "GB", 44, ["international"]),
    ("+4915123456789", "", "+4915123456789", T.NUMBER_TYPE_MOBILE, "DE", 49, ["international"]),
    ("030 12345678", "DE", "+493012345678", T.NUMBER_TYPE_FIXED_LINE, "DE", 49, ["international"]),
    ("+49177991234567", "", "+49177991234567", T.NUMBER_TYPE_VOICEMAIL, "DE", 49, ["international"]),
    ("+33612345678", "", "+33612345678", T.NUMBER_TYPE_MOBILE, "FR", 33, ["international"]),
    ("+33884012345", "", "+33884012345", T.NUMBER_TYPE_SHARED_COST, "FR", 33, ["international"]),
    ("+819012345678", "", "+819012345678", T.NUMBER_TYPE_MOBILE, "JP", 81, ["international"]),
    ("(02) 1234 5678", "AU", "+61212345678", T.NUMBER_TYPE_FIXED_LINE, "AU", 61, ["international"]),
    ("+551123456789", "", "+551123456789", T.NUMBER_TYPE_FIXED_LINE, "BR", 55, ["international"]),
    ("+919876543210", "", "+919876543210", T.NUMBER_TYPE_MOBILE, "IN", 91, ["international"]),
    ("+27211234567", "", "+27211234567", T.NUMBER_TYPE_FIXED_LINE, "ZA", 27, ["international"]),
    ("+34912345678", "", "+34912345678", T.NUMBER_TYPE_FIXED_LINE, "ES", 34, ["international"]),
    ("+390612345678", "", "+390612345678", T.NUMBER_TYPE_FIXED_LINE, "IT", 39, ["international"]),
    ("+8613812345678", "", "+8613812345678", T.NUMBER_TYPE_MOBILE, "CN", 86, ["international"]),
    ("+800 1234 5678", "", "+80012345678", T.NUMBER_TYPE_TOLL_FREE, "001", 800, ["international"]),
]


@pytest.mark.parametrize(("number", "region", "e164", "kind", "country", "code", "names"), CLASSIFIED)
def test_classify_number_of_many_countries(tenant, number, region, e164, kind, country, code, names):
    with tenant.numbers(Role.READER) as numbers:
        found = numbers.classify_number(number=number, region_code=region)
    assert found.number == e164
    assert found.classification == pb.Classification(
        type=kind, region_code=country, country_code=code, international=country != "US", classifiers=names
    )
    assert found.international_format.startswith(f"+{code} ")


def test_classify_number_gives_national_and_international_formats(tenant):
    with tenant.numbers() as numbers:
        aberdeen = numbers.classify_number("+441224901769")
        san_francisco = numbers.classify_number("+14155552671")
    assert (aberdeen.national_format, aberdeen.international_format) == ("01224 901769", "+44 1224 901769")
    assert (san_francisco.national_format, san_francisco.international_format) == ("(415) 555-2671", "+1 415-555-2671")


@pytest.mark.parametrize(
    ("code", "region", "kind", "country", "country_code", "names"),
    [
        ("911", "", T.NUMBER_TYPE_EMERGENCY, "US", 1, ["emergency"]),
        ("112", "DE", T.NUMBER_TYPE_EMERGENCY, "DE", 49, ["emergency"]),
        ("999", "GB", T.NUMBER_TYPE_EMERGENCY, "GB", 44, ["emergency"]),
        ("000", "AU", T.NUMBER_TYPE_EMERGENCY, "AU", 61, ["unknown"]),
        ("411", "US", T.NUMBER_TYPE_SHORT_CODE, "US", 1, ["unknown"]),
        ("116123", "GB", T.NUMBER_TYPE_SHORT_CODE, "GB", 44, ["unknown"]),
    ],
)
def test_short_codes_are_emergency_or_short_code(tenant, code, region, kind, country, country_code, names):
    with tenant.numbers() as numbers:
        found = numbers.classify_number(number=f" {code} ", region_code=region)
    assert (found.number, found.national_format, found.international_format) == (code, code, "")
    assert found.classification == pb.Classification(
        type=kind, region_code=country, country_code=country_code, international=country != "US", classifiers=names
    )


def test_international_follows_the_home_region(tenant, environment):
    with tenant.numbers() as numbers:
        assert not numbers.classify_number("+14155552671").classification.international
        environment.set(VOXPLANE_HOME_REGION="GB")
        assert numbers.classify_number("+14155552671").classification.international
        national = numbers.classify_number("01224 901769")  # read in the home region now
        assert national.number == "+441224901769"
        assert not national.classification.international
        assert numbers.classify_number("999").classification.type == T.NUMBER_TYPE_EMERGENCY


@pytest.mark.parametrize(
    ("fields", "field", "shown"),
    [
        ({"number": ""}, "number", "required"),
        ({"number": "   "}, "number", "required"),
        ({"number": "+1785"}, "number", "'+1785'"),
        ({"number": "not a number"}, "number", "'not a number'"),
        ({"number": "12345"}, "number", "short code of US"),  # no such short code in the US
        ({"number": "01224 901769"}, "number", "'01224 901769'"),  # not a US number
        ({"number": "112", "region_code": "XX"}, "region_code", "'XX'"),
        ({"number": "+" + "1" * 70}, "number", "at most 64"),
    ],
)
def test_classify_rejects_what_is_not_a_number_naming_the_field(tenant, fields, field, shown):
    with tenant.numbers() as numbers, pytest.raises(InvalidArgumentError) as caught:
        numbers.classify_number(fields)
    assert [v.field for v in caught.value.field_violations] == [field]
    assert shown in caught.value.message


def test_list_classifiers_returns_kazoo_defaults_in_the_order_tried(tenant):
    with tenant.numbers(Role.READER) as numbers:
        listed = numbers.list_classifiers().classifiers
    assert [c.name for c in listed] == [
        "tollfree_us", "toll_us", "emergency", "caribbean", "did_us", "international", "unknown"
    ]
    assert all(c.friendly_name and re.compile(c.pattern) for c in listed)
    tollfree = listed[0]
    assert tollfree.friendly_name == "US Toll Free"
    assert tollfree.pattern == r"^\+1((?:800|888|877|866|855|844|833)\d{7})$"


# (number sent, E.164, region, description, carrier, time zones), numbers of 12 countries
LOCALITIES = [
    ("+1 415-555-2671", "+14155552671", "US", "San Francisco, CA", "", ["America/Los_Angeles"]),
    ("+14162223333", "+14162223333", "CA", "North York, ON", "", ["America/Toronto"]),
    ("+44 1224 901769", "+441224901769", "GB", "Aberdeen", "", ["Europe/London"]),
    ("+447400123456", "+447400123456", "GB", "United Kingdom", "Three",
     ["Europe/Guernsey", "Europe/Isle_of_Man", "Europe/Jersey", "Europe/London"]),
    ("+4915123456789", "+4915123456789", "DE", "Germany", "T-Mobile", ["Europe/Berlin"]),
    ("+493012345678", "+493012345678", "DE", "Berlin", "", ["Europe/Berlin"]),
    ("+33612345678", "+33612345678", "FR", "France", "SFR", ["Europe/Paris"]),
    ("+819012345678", "+819012345678", "JP", "Japan", "KDDI", ["Asia/Tokyo"]),
    ("+61212345678", "+61212345678", "AU", "New South Wales", "", ["Australia/Sydney"]),
    ("+551123456789", "+551123456789", "BR", "São Paulo", "", ["America/Sao_Paulo"]),
    ("+919876543210", "+919876543210", "IN", "India", "Airtel", ["Asia/Calcutta"]),
    ("+27211234567", "+27211234567", "ZA", "Cape Town/Gordons Bay/Somerset West/Stellenbosch", "",
     ["Africa/Johannesburg"]),
    ("+34912345678", "+34912345678", "ES", "Madrid", "", ["Europe/Madrid"]),
    ("+390612345678", "+390612345678", "IT", "Rome", "", ["Europe/Rome"]),
    ("+8613812345678", "+8613812345678", "CN", "Lianyungang, Jiangsu", "China Mobile", ["Asia/Shanghai"]),
    ("+80012345678", "+80012345678", "001", "", "", []),  # libphonenumber's "Etc/Unknown" is left out
]


def test_get_number_locality_of_numbers_of_many_countries_in_request_order(tenant):
    with tenant.numbers(Role.READER) as numbers:
        answer = numbers.get_number_locality(numbers=[row[0] for row in LOCALITIES])
    assert [
        (p.e164_number, p.region_code, p.description, p.carrier, list(p.time_zones)) for p in answer.localities
    ] == [row[1:] for row in LOCALITIES]


def test_get_number_locality_repeats_a_number_asked_twice(tenant):
    with tenant.numbers() as numbers:
        answer = numbers.get_number_locality(numbers=["+441224901769", "+14155552671", "+441224901769"])
    assert [p.description for p in answer.localities] == ["Aberdeen", "San Francisco, CA", "Aberdeen"]


@pytest.mark.parametrize(
    ("sent", "fields"),
    [
        ([], {"numbers"}),
        (["+441224901769"] * 101, {"numbers"}),
        (["+441224901769", "01224 901769", "+1785", "+14155552671", ""], {"numbers[1]", "numbers[2]", "numbers[4]"}),
        (["911"], {"numbers[0]"}),
    ],
)
def test_get_number_locality_rejects_bad_lists_naming_each_bad_number(tenant, sent, fields):
    with tenant.numbers() as numbers, pytest.raises(InvalidArgumentError) as caught:
        numbers.get_number_locality(numbers=sent)
    assert {v.field for v in caught.value.field_violations} == fields


def test_list_access_codes_gives_every_feature_code_with_what_it_does(tenant):
    with tenant.numbers(Role.READER) as numbers:
        codes = numbers.list_access_codes().access_codes
    assert [c.code for c in codes] == [
        "*55", "*56", "*10", "*50", "*30*{number}", "*31*{number}", "*32*{number}", "*21*{number}", "*21", "*22",
        "*8", "*01",
    ]
    described = {c.code: c.description for c in codes}
    assert all(described.values())
    assert "voicemail" in described["*55"].lower()
    assert "forward" in described["*21*{number}"].lower() and "{number}" in described["*21*{number}"]
    assert "off" in described["*21"]


def test_catalog_rpcs_need_an_api_key(server):
    with Numbers(endpoint=server.address, api_key="vxp_nope") as numbers:
        for call in (
            lambda: numbers.classify_number("911"),
            numbers.list_classifiers,
            lambda: numbers.get_number_locality(numbers=["+14155552671"]),
            numbers.list_access_codes,
        ):
            with pytest.raises(UnauthenticatedError):
                call()


# London numbers kept for drama (020 7946 0xxx), in an order no other test of this worker uses.
_london = (f"+44207946{n % 1000:04d}" for n in itertools.count(secrets.randbelow(1000)))
_london_lock = threading.Lock()


def test_numbers_carry_their_classification(tenant, fresh_e164):
    with _london_lock:
        london = next(_london)
    with tenant.numbers() as numbers:
        us = numbers.create_number(provider_ref="trunk-1", e164_number=fresh_e164(), aor_link="sip:1001@sip.local")
        gb = numbers.create_number(provider_ref="trunk-1", e164_number=london, aor_link="sip:1002@sip.local")
        assert us.classification == pb.Classification(
            type=T.NUMBER_TYPE_FIXED_LINE_OR_MOBILE, region_code="US", country_code=1, classifiers=["did_us"]
        )
        assert gb.classification == pb.Classification(
            type=T.NUMBER_TYPE_FIXED_LINE, region_code="GB", country_code=44, international=True,
            classifiers=["international"],
        )
        assert numbers.get_number(us.ref).classification == us.classification
        listed = {n.ref: n.classification for n in numbers.list_numbers().numbers}
        assert listed == {us.ref: us.classification, gb.ref: gb.classification}
        assert numbers.classify_number(london).classification == gb.classification


# --- the operator's classifier file (VOXPLANE_CLASSIFIERS), at unit level -------------------


def write_json(tmp_path, content) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path / "classifiers.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


UK_CLASSIFIERS = [
    {"name": "emergency_gb", "friendly_name": "UK Emergency", "pattern": r"^(999|112)$"},
    {"name": "freephone_gb", "friendly_name": "UK Freephone", "pattern": r"^\+44(80[08]\d{6,7})$"},
    {"name": "geographic_gb", "friendly_name": "UK Geographic", "pattern": r"^\+44([12]\d{8,9})$"},
    {"name": "mobile_gb", "friendly_name": "UK Mobile", "pattern": r"^\+44(7\d{9})$"},
]


def test_a_classifier_file_replaces_the_defaults_in_its_order(tmp_path):
    loaded = catalog.load_classifiers(write_json(tmp_path, UK_CLASSIFIERS))
    assert [(c.name, c.friendly_name, c.pattern) for c in loaded] == [
        (c["name"], c["friendly_name"], c["pattern"]) for c in UK_CLASSIFIERS
    ]
    assert catalog.matching("+441224901769", loaded) == ("geographic_gb",)
    assert catalog.matching("+448001234567", loaded) == ("freephone_gb",)
    assert catalog.matching("999", loaded) == ("emergency_gb",)
    assert catalog.matching("+14155552671", loaded) == ()  # nothing matches: no name


def test_the_first_matching_classifier_names_the_number(tmp_path):
    loaded = catalog.load_classifiers(
        write_json(tmp_path, [
            {"name": "london", "friendly_name": "London", "pattern": r"^\+4420"},
            {"name": "uk", "friendly_name": "UK", "pattern": r"^\+44"},
        ])
    )
    assert catalog.matching("+442079460000", loaded) == ("london",)
    assert catalog.matching("+441224901769", loaded) == ("uk",)


def test_voxplane_classifiers_names_the_file_the_deployment_uses(tmp_path, environment):
    environment.set(VOXPLANE_CLASSIFIERS=write_json(tmp_path, UK_CLASSIFIERS))
    assert [c.name for c in catalog.classifiers()] == [c["name"] for c in UK_CLASSIFIERS]
    assert catalog.classification("+447400123456").classifiers == ("mobile_gb",)
    assert catalog.classify("999", "GB").classification.classifiers == ("emergency_gb",)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[{", "is not valid JSON"),
        ('{"name": "x"}', "must hold a JSON list"),
        ('["did_us"]', "item 0 is not an object"),
        ([{"name": "a", "friendly_name": "A"}], "item 0 needs 'pattern'"),
        ([{"name": "a", "friendly_name": "A", "pattern": "^1"}, {"friendly_name": "B", "pattern": "^2"}],
         "item 1 needs 'name'"),
        ([{"name": "a", "pattern": "^1"}], "item 0 needs 'friendly_name'"),
        ([{"name": "a", "friendly_name": "A", "pattern": 7}], "item 0 needs 'pattern'"),
        ([{"name": "bad", "friendly_name": "Bad", "pattern": r"^\+1(800"}],
         "item 0 ('bad'): the pattern ^\\+1(800 is not a regular expression (missing ), unterminated"),
        ([{"name": "a", "friendly_name": "A", "pattern": "^1"}, {"name": "a", "friendly_name": "B", "pattern": "^2"}],
         "the name 'a' is used twice"),
    ],
)
def test_a_bad_classifier_file_is_refused_naming_the_file_and_the_problem(tmp_path, content, problem):
    path = write_json(tmp_path, content)
    with pytest.raises(catalog.SettingsError) as caught:
        catalog.load_classifiers(path)
    assert str(caught.value).startswith(f"VOXPLANE_CLASSIFIERS file {path!r}: ")
    assert problem in str(caught.value)


def test_a_missing_classifier_file_is_refused(tmp_path):
    with pytest.raises(catalog.SettingsError, match="cannot be read"):
        catalog.load_classifiers(tmp_path / "nowhere.json")


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        ("VOXPLANE_CLASSIFIERS", '[{"name": "bad", "friendly_name": "Bad", "pattern": "("}]', "classifiers.json"),
        ("VOXPLANE_HOME_REGION", "XX", "VOXPLANE_HOME_REGION 'XX'"),
    ],
)
def test_bad_catalog_settings_stop_the_numbers_service_from_starting(tmp_path, environment, variable, value, shown):
    environment.set(**{variable: write_json(tmp_path, value) if variable == "VOXPLANE_CLASSIFIERS" else value})
    with pytest.raises(SystemExit) as caught:
        NumbersServicer(None, None)  # type: ignore[arg-type]
    assert shown in str(caught.value.code)


def test_a_stored_number_that_no_longer_parses_is_unspecified_not_an_error():
    assert catalog.classification("+1785").type == "UNSPECIFIED"
    assert catalog.classification("garbage") == catalog.Classification("UNSPECIFIED", "", 0, False, ("unknown",))


# --- the fast paths: E.164 input checked and classified without parsing ----------------------------


def _sample_numbers() -> list[str]:
    """Example numbers of every region and type libphonenumber knows, non-geographic ones too, and near misses."""
    found = set()
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE,
                     phonenumbers.PhoneNumberType.TOLL_FREE, phonenumbers.PhoneNumberType.VOIP):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                found.add(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:  # +800, +882...: region "001"
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            found.add(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    variants = set()
    for e164 in sorted(found):
        code = str(phonenumbers.parse(e164).country_code)
        rest = e164[1 + len(code):]
        parsed = phonenumbers.parse(e164)
        written = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        variants |= {e164, e164[:-1], e164 + "5", f"+{code}0{rest}", f"+{code}1{rest}", f"+{code}{rest[1:]}",
                     e164.replace("+", "+0"), e164 + " ", f"+{code} {rest}",
                     # as people write them: the INTERNATIONAL format, other punctuation, a trunk "(0)"
                     written, written.replace(" ", "-"), written.replace(" ", "."), f"+{code} ({rest[:3]}) {rest[3:]}",
                     f"+{code} (0) {rest}", f"+{code} ({rest[:2]}) {rest[2:]}-", f"+{code}/{rest}"}
    return sorted(variants | {"+", "+1", "+999", "++14155550100", "+1415555010０", "+١٤١٥٥٥٥٠١٠٠", "14155550100"})


def test_the_batch_reads_e164_numbers_exactly_as_create_number_does(sample_numbers):
    assert len(sample_numbers) > 2000
    for value in sample_numbers:
        fast, slow = Violations(), Violations()
        assert catalog.checked_e164(fast, "e", value) == validation.e164(slow, "e", value), value
        assert bool(fast) == bool(slow), value


@pytest.fixture(scope="module")
def sample_numbers() -> list[str]:
    return _sample_numbers()


def test_classification_answers_as_libphonenumber_does(sample_numbers, environment):
    for value in sample_numbers:
        found = catalog.classification(value)
        try:
            parsed = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException:
            assert (found.type, found.region_code, found.country_code) == ("UNSPECIFIED", "", 0), value
            continue
        valid = phonenumbers.is_valid_number(parsed)
        kind = phonenumbers.number_type(parsed)
        expected_type = catalog._TYPE_NAMES[kind] if valid else "UNSPECIFIED"
        region = phonenumbers.region_code_for_number(parsed) or ""
        assert (found.type, found.region_code, found.country_code) == (expected_type, region, parsed.country_code), value
