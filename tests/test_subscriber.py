"""Subscriber and emergency (E911) address of a number, over a real channel: every RPC's success and
failure paths, statuses, etags, tenancy and roles, and postal codes of several countries."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

import phonenumbers
import pytest
from sqlalchemy import update

from voxplane import (
    AbortedError,
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from voxplane.numbers.v1 import numbers_pb2 as pb
from voxplane.services.core.auth import Role
from voxplane.services.numbers.models import Number
from voxplane.services.numbers.subscriber import check_postal_code, check_region
from voxplane.services.persistence.base import utcnow


def violated_fields(error: InvalidArgumentError) -> set[str]:
    return {v.field for v in error.field_violations}


def create(numbers, e164: str) -> pb.Number:  # type: ignore[no-untyped-def]
    return numbers.create_number(provider_ref="trunk-1", e164_number=e164, aor_link="sip:1@sip.local")


def create_in(numbers, region: str) -> pb.Number:  # type: ignore[no-untyped-def]
    """A new number of `region`: GB from the drama range 020 7946 0xxx, others near the region's example number."""
    for _ in range(50):
        if region == "GB":
            e164 = f"+442079460{secrets.randbelow(1000):03d}"
        else:
            example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.FIXED_LINE)
            digits = str(example.national_number)
            candidate = phonenumbers.parse(f"+{example.country_code}{digits[:-4]}{secrets.randbelow(10_000):04d}")
            if not phonenumbers.is_valid_number(candidate):
                continue
            e164 = phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164)
        try:
            return create(numbers, e164)
        except AlreadyExistsError:
            continue
    raise AssertionError(f"no free {region} number found")


SUBSCRIBER = {"first_name": "Ada", "name": "Lovelace", "address1": "12 St James's Square", "postcode": "SW1Y 4JH"}
US_ADDRESS = {
    "street_address": "140 New Montgomery St",
    "locality": "San Francisco",
    "region": "CA",
    "postal_code": "94105",
    "country": "US",
}


@pytest.fixture
def numbers(tenant):  # type: ignore[no-untyped-def]
    with tenant.numbers() as member:
        yield member


@pytest.fixture
def us_number(numbers, fresh_e164) -> pb.Number:  # type: ignore[no-untyped-def]
    return create(numbers, fresh_e164())


@pytest.fixture
def gb_number(numbers) -> pb.Number:  # type: ignore[no-untyped-def]
    return create_in(numbers, "GB")


# --- GetNumber before anything is set ---------------------------------------------------------


def test_a_new_number_has_an_unknown_subscriber_and_no_emergency_address(numbers, us_number):
    got = numbers.get_number(us_number.ref)
    assert got.subscriber == pb.Subscriber(status=pb.SUBSCRIBER_STATUS_UNSPECIFIED)
    assert not got.HasField("emergency_address")
    assert got.emergency_enabled is False


# --- UpdateSubscriber -------------------------------------------------------------------------


def test_update_subscriber_stores_the_block_pending_validation(numbers, gb_number):
    updated = numbers.update_subscriber(
        ref=gb_number.ref, address2="Westminster", address3="", address4="London", **{**SUBSCRIBER, "postcode": "sw1y4jh"}
    )
    subscriber = updated.subscriber
    assert subscriber.status == pb.SUBSCRIBER_STATUS_VALIDATION_PENDING
    assert (subscriber.first_name, subscriber.name, subscriber.address1) == ("Ada", "Lovelace", "12 St James's Square")
    assert (subscriber.address2, subscriber.address3, subscriber.address4) == ("Westminster", "", "London")
    assert subscriber.postcode == "SW1Y 4JH"  # normalised
    assert subscriber.rejection_reason == ""
    assert subscriber.update_time.seconds > 0
    assert updated.etag != gb_number.etag
    assert updated.update_time.ToDatetime() >= gb_number.update_time.ToDatetime()
    assert numbers.get_number(gb_number.ref) == updated


def test_update_subscriber_of_a_us_number_takes_a_zip_code(numbers, us_number):
    updated = numbers.update_subscriber(ref=us_number.ref, name="Acme Inc", address1="1 Main St", postcode="941051234")
    assert updated.subscriber.postcode == "94105-1234"
    assert updated.subscriber.first_name == ""  # a company has no first name


def test_update_subscriber_changes_the_fields_it_names_and_leaves_the_others(numbers, gb_number):
    first = numbers.update_subscriber(ref=gb_number.ref, address2="Westminster", address4="London", **SUBSCRIBER)
    again = numbers.update_subscriber(ref=gb_number.ref, name="Babbage", address1="1 Dorset St", postcode="W1U 4EG")
    assert again.subscriber.first_name == first.subscriber.first_name != ""
    assert (again.subscriber.address2, again.subscriber.address4) == ("Westminster", "London")
    assert (again.subscriber.name, again.subscriber.postcode) == ("Babbage", "W1U 4EG")
    cleared = numbers.update_subscriber(ref=gb_number.ref, address2="", first_name="")  # named, empty: cleared
    assert (cleared.subscriber.address2, cleared.subscriber.first_name) == ("", "")
    assert cleared.subscriber.address4 == "London"
    with pytest.raises(InvalidArgumentError) as caught:  # the subscriber as changed must be complete
        numbers.update_subscriber(ref=gb_number.ref, postcode="")
    assert violated_fields(caught.value) == {"postcode"}


def test_update_subscriber_reports_every_missing_field(numbers, gb_number):
    with pytest.raises(InvalidArgumentError) as caught:
        numbers.update_subscriber(ref=gb_number.ref, first_name="Ada", name=" ", address1="", postcode="")
    assert violated_fields(caught.value) == {"name", "address1", "postcode"}


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"first_name": "f" * 129}, "first_name"),
        ({"name": "n" * 256}, "name"),
        ({"address3": "a" * 256}, "address3"),
        ({"postcode": "P" * 17}, "postcode"),
        ({"postcode": "94105"}, "postcode"),  # a US ZIP code on a GB number
        ({"postcode": "SW1Y"}, "postcode"),  # outward code only
    ],
)
def test_update_subscriber_rejects_bad_fields(numbers, gb_number, fields, bad_field):
    with pytest.raises(InvalidArgumentError) as caught:
        numbers.update_subscriber(ref=gb_number.ref, **{**SUBSCRIBER, **fields})
    assert violated_fields(caught.value) == {bad_field}
    assert numbers.get_number(gb_number.ref).subscriber.status == pb.SUBSCRIBER_STATUS_UNSPECIFIED


def test_update_subscriber_checks_the_postcode_against_the_numbers_country(numbers, us_number):
    with pytest.raises(InvalidArgumentError) as caught:
        numbers.update_subscriber(ref=us_number.ref, **SUBSCRIBER)  # a London postcode on a US number
    assert violated_fields(caught.value) == {"postcode"}
    assert "SW1Y 4JH" in caught.value.message and "US" in caught.value.message


def test_update_subscriber_honours_the_etag(numbers, gb_number):
    with pytest.raises(AbortedError):
        numbers.update_subscriber(ref=gb_number.ref, etag=f"{gb_number.ref}-999", **SUBSCRIBER)
    updated = numbers.update_subscriber(ref=gb_number.ref, etag=gb_number.etag, **SUBSCRIBER)
    with pytest.raises(AbortedError):  # the etag it was given is stale now
        numbers.update_subscriber(ref=gb_number.ref, etag=gb_number.etag, **SUBSCRIBER)
    assert numbers.update_subscriber(ref=gb_number.ref, etag=updated.etag, **SUBSCRIBER).etag != updated.etag


def test_update_subscriber_of_an_unknown_number_is_not_found(numbers):
    with pytest.raises(NotFoundError):
        numbers.update_subscriber(ref="nope", **SUBSCRIBER)
    with pytest.raises(InvalidArgumentError) as caught:
        numbers.update_subscriber(ref="", **SUBSCRIBER)
    assert violated_fields(caught.value) == {"ref"}


def test_a_reader_cannot_update_the_subscriber(tenant, gb_number):
    with tenant.numbers(Role.READER) as reader, pytest.raises(PermissionDeniedError):
        reader.update_subscriber(ref=gb_number.ref, **SUBSCRIBER)


# --- ReviewSubscriber -------------------------------------------------------------------------


def test_an_operator_of_another_workspace_validates_a_pending_subscriber(numbers, gb_number, other_tenant):
    pending = numbers.update_subscriber(ref=gb_number.ref, **SUBSCRIBER)
    with other_tenant.numbers(Role.OPERATOR) as operator:
        reviewed = operator.review_subscriber(ref=gb_number.ref, approve=True)
    assert reviewed.subscriber.status == pb.SUBSCRIBER_STATUS_VALIDATED
    assert reviewed.subscriber.rejection_reason == ""
    assert reviewed.etag != pending.etag
    got = numbers.get_number(gb_number.ref)
    assert got.subscriber.status == pb.SUBSCRIBER_STATUS_VALIDATED
    assert got.subscriber.postcode == "SW1Y 4JH"


def test_a_rejection_needs_a_reason_and_keeps_it_until_the_next_update(numbers, gb_number, tenant):
    numbers.update_subscriber(ref=gb_number.ref, **SUBSCRIBER)
    with tenant.numbers(Role.OPERATOR) as operator:
        with pytest.raises(InvalidArgumentError) as caught:
            operator.review_subscriber(ref=gb_number.ref, approve=False)
        assert violated_fields(caught.value) == {"rejection_reason"}
        reason = "The postcode does not match the address; send a utility bill."
        rejected = operator.review_subscriber(ref=gb_number.ref, approve=False, rejection_reason=reason)
    assert rejected.subscriber.status == pb.SUBSCRIBER_STATUS_REJECTED
    assert rejected.subscriber.rejection_reason == reason
    assert numbers.get_number(gb_number.ref).subscriber.rejection_reason == reason
    resubmitted = numbers.update_subscriber(ref=gb_number.ref, **{**SUBSCRIBER, "address1": "13 St James's Square"})
    assert resubmitted.subscriber.status == pb.SUBSCRIBER_STATUS_VALIDATION_PENDING
    assert resubmitted.subscriber.rejection_reason == ""


def test_an_approval_takes_no_rejection_reason(numbers, gb_number, tenant):
    numbers.update_subscriber(ref=gb_number.ref, **SUBSCRIBER)
    with tenant.numbers(Role.OPERATOR) as operator, pytest.raises(InvalidArgumentError) as caught:
        operator.review_subscriber(ref=gb_number.ref, approve=True, rejection_reason="looks fine")
    assert violated_fields(caught.value) == {"rejection_reason"}


def test_review_needs_something_pending(numbers, gb_number, tenant):
    with tenant.numbers(Role.OPERATOR) as operator:
        with pytest.raises(FailedPreconditionError) as caught:
            operator.review_subscriber(ref=gb_number.ref, approve=True)
        assert "no subscriber" in caught.value.message
        numbers.update_subscriber(ref=gb_number.ref, **SUBSCRIBER)
        operator.review_subscriber(ref=gb_number.ref, approve=True)
        with pytest.raises(FailedPreconditionError) as caught:
            operator.review_subscriber(ref=gb_number.ref, approve=False, rejection_reason="Changed my mind.")
        assert "VALIDATED" in caught.value.message


@pytest.mark.parametrize("role", [Role.MEMBER, Role.ADMIN, Role.SERVICE, Role.READER])
def test_only_operators_review(numbers, gb_number, tenant, role):
    numbers.update_subscriber(ref=gb_number.ref, **SUBSCRIBER)
    with tenant.numbers(role) as caller, pytest.raises(PermissionDeniedError):
        caller.review_subscriber(ref=gb_number.ref, approve=True)
    assert numbers.get_number(gb_number.ref).subscriber.status == pb.SUBSCRIBER_STATUS_VALIDATION_PENDING


def test_review_of_an_unknown_or_dead_number_is_not_found(numbers, gb_number, tenant, db):
    numbers.update_subscriber(ref=gb_number.ref, **SUBSCRIBER)
    with tenant.numbers(Role.OPERATOR) as operator:
        with pytest.raises(NotFoundError):
            operator.review_subscriber(ref="nope", approve=True)
        with pytest.raises(InvalidArgumentError) as caught:
            operator.review_subscriber(ref="", approve=True)
        assert violated_fields(caught.value) == {"ref"}
        # Released long enough ago to have aged: the row is dead and hidden.
        db.transaction(
            lambda s: s.execute(
                update(Number)
                .where(Number.ref == gb_number.ref)
                .values(state="RELEASED", release_time=utcnow() - timedelta(days=3650))
            ),
            write=True,
        )
        with pytest.raises(NotFoundError):
            operator.review_subscriber(ref=gb_number.ref, approve=True)


# --- SetEmergencyAddress ----------------------------------------------------------------------


def test_set_emergency_address_stores_a_valid_address(numbers, us_number):
    updated = numbers.set_emergency_address(
        ref=us_number.ref,
        address={**US_ADDRESS, "extended_address": "Floor 3", "region": "california", "country": "us",
                 "postal_code": "94105 1234", "status": "EMERGENCY_ADDRESS_STATUS_VALID", "problems": ["ignored"]},
    )
    address = updated.emergency_address
    assert address.status == pb.EMERGENCY_ADDRESS_STATUS_VALID
    assert list(address.problems) == []
    assert (address.street_address, address.extended_address, address.locality) == (
        "140 New Montgomery St", "Floor 3", "San Francisco"
    )
    assert (address.region, address.postal_code, address.country) == ("CA", "94105-1234", "US")
    assert updated.emergency_enabled is False
    assert updated.etag != us_number.etag
    assert numbers.get_number(us_number.ref) == updated


def test_an_address_with_problems_is_kept_invalid_with_one_sentence_each(numbers, us_number):
    updated = numbers.set_emergency_address(
        ref=us_number.ref, address={**US_ADDRESS, "postal_code": "9410", "region": "Cali"}
    )
    address = updated.emergency_address
    assert address.status == pb.EMERGENCY_ADDRESS_STATUS_INVALID
    assert len(address.problems) == 2
    postal, region = address.problems
    assert "'9410'" in postal and "94105" in postal and postal.endswith(".")
    assert "'Cali'" in region and region.endswith(".")
    assert address.postal_code == "9410"  # kept as given


def test_an_address_outside_the_numbers_country_is_invalid(numbers, us_number, gb_number):
    london = {"street_address": "10 Downing St", "locality": "London", "postal_code": "sw1a2aa", "country": "GB"}
    on_us = numbers.set_emergency_address(ref=us_number.ref, address=london).emergency_address
    assert on_us.status == pb.EMERGENCY_ADDRESS_STATUS_INVALID
    assert len(on_us.problems) == 1
    assert "GB" in on_us.problems[0] and us_number.e164_number in on_us.problems[0]
    assert on_us.postal_code == "SW1A 2AA"  # the postal code itself was fine
    on_gb = numbers.set_emergency_address(ref=gb_number.ref, address=london).emergency_address
    assert on_gb.status == pb.EMERGENCY_ADDRESS_STATUS_VALID


def test_a_gb_address_needs_no_region(numbers, gb_number):
    address = {"street_address": "1 Piccadilly", "locality": "Manchester", "postal_code": "M1 1DZ", "country": "GB"}
    updated = numbers.set_emergency_address(ref=gb_number.ref, address=address)
    assert updated.emergency_address.status == pb.EMERGENCY_ADDRESS_STATUS_VALID
    assert updated.emergency_address.region == ""


@pytest.mark.parametrize(
    ("address", "bad_fields"),
    [
        ({**US_ADDRESS, "street_address": ""}, {"address.street_address"}),
        ({**US_ADDRESS, "locality": " "}, {"address.locality"}),
        ({**US_ADDRESS, "postal_code": ""}, {"address.postal_code"}),
        ({**US_ADDRESS, "country": ""}, {"address.country"}),
        ({**US_ADDRESS, "region": ""}, {"address.region"}),  # required in the US
        ({**US_ADDRESS, "country": "USA"}, {"address.country"}),
        ({**US_ADDRESS, "postal_code": "9" * 17}, {"address.postal_code"}),
        ({**US_ADDRESS, "street_address": "s" * 256}, {"address.street_address"}),
        ({"country": "CA"}, {"address.street_address", "address.locality", "address.postal_code", "address.region"}),
        ({"country": "AU"}, {"address.street_address", "address.locality", "address.postal_code", "address.region"}),
        (None, {"address"}),
    ],
)
def test_set_emergency_address_rejects_missing_fields(numbers, us_number, address, bad_fields):
    request = {"ref": us_number.ref} if address is None else {"ref": us_number.ref, "address": address}
    with pytest.raises(InvalidArgumentError) as caught:
        numbers.set_emergency_address(request)
    assert violated_fields(caught.value) == bad_fields
    assert not numbers.get_number(us_number.ref).HasField("emergency_address")


def test_set_emergency_address_honours_the_etag(numbers, us_number):
    with pytest.raises(AbortedError):
        numbers.set_emergency_address(ref=us_number.ref, address=US_ADDRESS, etag=f"{us_number.ref}-999")
    first = numbers.set_emergency_address(ref=us_number.ref, address=US_ADDRESS, etag=us_number.etag)
    with pytest.raises(AbortedError):
        numbers.set_emergency_address(ref=us_number.ref, address=US_ADDRESS, etag=us_number.etag)
    second = numbers.set_emergency_address(ref=us_number.ref, address=US_ADDRESS, etag=first.etag)
    assert second.etag != first.etag


def test_a_new_address_turns_emergency_calling_off(numbers, us_number):
    numbers.set_emergency_address(ref=us_number.ref, address=US_ADDRESS)
    assert numbers.enable_emergency(ref=us_number.ref, enabled=True).emergency_enabled is True
    moved = numbers.set_emergency_address(ref=us_number.ref, address={**US_ADDRESS, "street_address": "1 Market St"})
    assert moved.emergency_enabled is False
    assert moved.emergency_address.street_address == "1 Market St"
    assert numbers.get_number(us_number.ref).emergency_enabled is False


# --- EnableEmergency --------------------------------------------------------------------------


def test_emergency_calling_needs_an_address(numbers, us_number):
    with pytest.raises(FailedPreconditionError) as caught:
        numbers.enable_emergency(ref=us_number.ref, enabled=True)
    assert "no emergency address" in caught.value.message
    assert numbers.get_number(us_number.ref).emergency_enabled is False


def test_emergency_calling_needs_a_valid_address(numbers, us_number):
    numbers.set_emergency_address(ref=us_number.ref, address={**US_ADDRESS, "postal_code": "ABCDE"})
    with pytest.raises(FailedPreconditionError) as caught:
        numbers.enable_emergency(ref=us_number.ref, enabled=True)
    assert "INVALID" in caught.value.message and "'ABCDE'" in caught.value.message
    fixed = numbers.set_emergency_address(ref=us_number.ref, address=US_ADDRESS)
    enabled = numbers.enable_emergency(ref=us_number.ref, enabled=True)
    assert enabled.emergency_enabled is True
    assert enabled.etag != fixed.etag
    assert numbers.get_number(us_number.ref).emergency_enabled is True


def test_turning_emergency_calling_off_always_works(numbers, us_number):
    off = numbers.enable_emergency(ref=us_number.ref, enabled=False)  # no address at all
    assert off.emergency_enabled is False
    assert off.etag == us_number.etag  # already off: nothing changed
    numbers.set_emergency_address(ref=us_number.ref, address=US_ADDRESS)
    on = numbers.enable_emergency(ref=us_number.ref, enabled=True)
    off = numbers.enable_emergency(ref=us_number.ref, enabled=False)
    assert off.emergency_enabled is False
    assert off.etag != on.etag
    assert off.emergency_address.status == pb.EMERGENCY_ADDRESS_STATUS_VALID  # the address stays


def test_enable_emergency_honours_the_etag(numbers, us_number):
    with_address = numbers.set_emergency_address(ref=us_number.ref, address=US_ADDRESS)
    with pytest.raises(AbortedError):
        numbers.enable_emergency(ref=us_number.ref, enabled=True, etag=us_number.etag)
    on = numbers.enable_emergency(ref=us_number.ref, enabled=True, etag=with_address.etag)
    with pytest.raises(AbortedError):
        numbers.enable_emergency(ref=us_number.ref, enabled=False, etag=with_address.etag)
    assert numbers.enable_emergency(ref=us_number.ref, enabled=False, etag=on.etag).emergency_enabled is False


# --- Races ------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_etag", [True, False])
def test_racing_first_writes_of_both_blocks_are_ok_or_aborted(tenant, us_number, with_etag):
    etag = us_number.etag if with_etag else ""

    async def race() -> list[object]:
        async with tenant.async_numbers(Role.MEMBER) as numbers:
            writes = [
                numbers.update_subscriber(ref=us_number.ref, name=f"n{i}", address1="1 Main St", postcode="94105",
                                          etag=etag)
                for i in range(8)
            ] + [
                numbers.set_emergency_address(ref=us_number.ref, address={**US_ADDRESS, "locality": f"l{i}"}, etag=etag)
                for i in range(8)
            ]
            return await asyncio.gather(*writes, return_exceptions=True)

    results = asyncio.run(race())
    assert all(isinstance(r, AbortedError) for r in results if isinstance(r, Exception)), results
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1 if with_etag else len(winners) >= 1


# --- Tenancy ----------------------------------------------------------------------------------


def test_another_workspaces_number_is_not_found(numbers, us_number, other_tenant):
    with other_tenant.numbers() as theirs, other_tenant.numbers(Role.OPERATOR) as their_operator:
        for caller in (theirs, their_operator):  # an operator reviews anywhere but writes only its own numbers
            with pytest.raises(NotFoundError):
                caller.update_subscriber(ref=us_number.ref, name="X", address1="1 Main St", postcode="94105")
            with pytest.raises(NotFoundError):
                caller.set_emergency_address(ref=us_number.ref, address=US_ADDRESS)
            with pytest.raises(NotFoundError):
                caller.enable_emergency(ref=us_number.ref, enabled=False)
    got = numbers.get_number(us_number.ref)
    assert got.subscriber.status == pb.SUBSCRIBER_STATUS_UNSPECIFIED
    assert not got.HasField("emergency_address")
    assert got.etag == us_number.etag


def test_list_numbers_carries_the_blocks(numbers, us_number):
    numbers.update_subscriber(ref=us_number.ref, name="Acme Inc", address1="1 Main St", postcode="94105")
    numbers.set_emergency_address(ref=us_number.ref, address=US_ADDRESS)
    listed = {n.ref: n for n in numbers.iter_numbers()}[us_number.ref]
    assert listed.subscriber.status == pb.SUBSCRIBER_STATUS_VALIDATION_PENDING
    assert listed.emergency_address.status == pb.EMERGENCY_ADDRESS_STATUS_VALID


# --- Several countries --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "given", "stored", "address_region"),
    [
        ("GB", "ec1a1bb", "EC1A 1BB", ""),
        ("CA", "k1a 0b1", "K1A 0B1", "Ontario"),
        ("DE", "10117", "10117", ""),
        ("FR", "75008", "75008", ""),
        ("NL", "1012js", "1012 JS", ""),
        ("AU", "2000", "2000", "NSW"),
        ("JP", "1000001", "100-0001", ""),
        ("BR", "01310100", "01310-100", ""),
        ("IN", "110001", "110001", ""),
        ("ZA", "8001", "8001", ""),
        ("IE", "d02x285", "D02 X285", ""),
    ],
)
def test_postal_codes_of_several_countries(numbers, region, given, stored, address_region):
    number = create_in(numbers, region)
    address = {"street_address": "1 High St", "locality": "Town", "region": address_region,
               "postal_code": given, "country": region}
    updated = numbers.set_emergency_address(ref=number.ref, address=address)
    assert list(updated.emergency_address.problems) == []
    assert updated.emergency_address.postal_code == stored
    assert numbers.enable_emergency(ref=number.ref, enabled=True).emergency_enabled is True
    subscriber = numbers.update_subscriber(ref=number.ref, name="Someone", address1="1 High St", postcode=given)
    assert subscriber.subscriber.postcode == stored


@pytest.mark.parametrize(
    ("country", "value"),
    [
        ("US", "9410"), ("US", "94105-12"), ("CA", "D1A 0B1"), ("GB", "QQ1 1AA"), ("DE", "1011"),
        ("NL", "0123 AB"), ("NL", "1012 SA"), ("JP", "100-001"), ("BR", "0131010"), ("IN", "012345"),
        ("ES", "53001"), ("AU", "20000"), ("ZA", "ABCD"), ("IE", "B02 X285"),
        ("KE", "!"), ("KE", "1"), ("KE", "12345678901"),  # not in the table: 2 to 10 letters, digits, spaces, hyphens
    ],
)
def test_postal_codes_of_the_wrong_shape(country, value):
    _, problem = check_postal_code(country, value)
    assert problem is not None


@pytest.mark.parametrize(
    ("country", "value", "written"),
    [
        ("US", "94105-1234", "94105-1234"), ("GB", "gir0aa", "GIR 0AA"), ("GB", "W1A0AX", "W1A 0AX"),
        ("JE", "je2 3ab", "JE2 3AB"), ("SE", "11455", "114 55"), ("PL", "00950", "00-950"),
        ("PT", "1100-148", "1100-148"), ("KE", "00100", "00100"), ("KE", " ab  12 ", "AB 12"),
    ],
)
def test_postal_codes_are_written_as_their_country_writes_them(country, value, written):
    assert check_postal_code(country, value) == (written, None)


def test_regions_are_stored_as_codes():
    assert check_region("US", "new york") == ("NY", None)
    assert check_region("CA", "Québec") == ("QC", None)
    assert check_region("AU", "vic") == ("VIC", None)
    assert check_region("GB", "Greater  London") == ("Greater London", None)
    assert check_region("US", "Ontario")[1] is not None


def test_a_puerto_rico_number_takes_a_us_or_pr_address(numbers):
    number = create_in(numbers, "PR")
    address = {"street_address": "1 Calle Fortaleza", "locality": "San Juan", "postal_code": "00901"}
    as_us = numbers.set_emergency_address(ref=number.ref, address={**address, "country": "US", "region": "PR"})
    assert as_us.emergency_address.status == pb.EMERGENCY_ADDRESS_STATUS_VALID
    as_pr = numbers.set_emergency_address(ref=number.ref, address={**address, "country": "PR"})
    assert as_pr.emergency_address.status == pb.EMERGENCY_ADDRESS_STATUS_VALID
