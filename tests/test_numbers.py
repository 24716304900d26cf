"""Numbers over a real channel: every RPC's success and failure paths."""

from __future__ import annotations

import asyncio
import base64

import pytest
from sqlalchemy import func, select

from voxplane import (
    AbortedError,
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
)
from voxplane.numbers.v1 import numbers_pb2 as pb
from voxplane.services.core.auth import Role
from voxplane.services.numbers.models import Number


def create(numbers, e164: str, **fields):  # type: ignore[no-untyped-def]
    request = {"provider_ref": "trunk-1", "e164_number": e164, "aor_link": "sip:1001@sip.local", **fields}
    return numbers.create_number(request)


def violated_fields(error: InvalidArgumentError) -> set[str]:
    return {v.field for v in error.field_violations}


def test_create_normalises_to_e164_and_returns_the_number(tenant, fresh_e164):
    e164 = fresh_e164()
    spaced = f"+1 ({e164[2:5]}) {e164[5:8]}-{e164[8:]}"
    with tenant.numbers() as numbers:
        number = create(numbers, spaced, name="Sales line")
        assert number.e164_number == e164
        assert number.name == "Sales line"
        assert number.provider_ref == "trunk-1"
        assert number.aor_link == "sip:1001@sip.local"
        assert number.WhichOneof("routing") == "aor_link"
        assert number.ref and number.etag
        assert number.create_time.seconds > 0
        assert numbers.get_number(number.ref) == number


def test_create_with_ingress_info(tenant, fresh_e164):
    with tenant.numbers() as numbers:
        number = numbers.create_number(
            provider_ref="trunk-1",
            e164_number=fresh_e164(),
            ingress_info={"webhook": "https://hooks.example.com/voice"},
        )
        assert number.WhichOneof("routing") == "ingress_info"
        assert number.ingress_info.webhook == "https://hooks.example.com/voice"


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"e164_number": "+1785"}, "e164_number"),
        ({"e164_number": "not a number"}, "e164_number"),
        ({"e164_number": "4155550100"}, "e164_number"),  # no country code
        ({"e164_number": ""}, "e164_number"),
        ({"provider_ref": ""}, "provider_ref"),
        ({"provider_ref": "x" * 129}, "provider_ref"),
        ({"name": "n" * 256}, "name"),
        ({"aor_link": "http://sip.local"}, "aor_link"),
        ({"aor_link": "sip:1001@bad host"}, "aor_link"),
        ({"aor_link": "sip:1001@sip.local:99999"}, "aor_link"),
        ({"aor_link": None, "ingress_info": {"webhook": "ftp://x.example.com"}}, "ingress_info.webhook"),
        ({"aor_link": None, "ingress_info": {"webhook": "https://"}}, "ingress_info.webhook"),
        ({"aor_link": None, "ingress_info": {}}, "ingress_info.webhook"),
        ({"aor_link": None}, "routing"),
        ({"request_id": "r" * 129}, "request_id"),
    ],
)
def test_create_rejects_bad_input_naming_the_field(tenant, fresh_e164, fields, bad_field):
    request = {"provider_ref": "trunk-1", "e164_number": fresh_e164(), "aor_link": "sip:1001@sip.local", **fields}
    request = {k: v for k, v in request.items() if v is not None}
    with tenant.numbers() as numbers, pytest.raises(InvalidArgumentError) as caught:
        numbers.create_number(request)
    assert violated_fields(caught.value) == {bad_field}
    assert bad_field.split(".")[0] in caught.value.message


def test_create_reports_every_bad_field_at_once(tenant):
    with tenant.numbers() as numbers, pytest.raises(InvalidArgumentError) as caught:
        numbers.create_number(e164_number="+1785", provider_ref="", aor_link="mailto:x")
    assert violated_fields(caught.value) == {"e164_number", "provider_ref", "aor_link"}


def test_same_e164_twice_is_already_exists_from_any_workspace(tenant, other_tenant, fresh_e164):
    e164 = fresh_e164()
    with tenant.numbers() as mine, other_tenant.numbers() as theirs:
        create(mine, e164)
        with pytest.raises(AlreadyExistsError) as caught:
            create(mine, e164)
        assert e164 in caught.value.message
        with pytest.raises(AlreadyExistsError):
            create(theirs, e164)


def test_request_id_retry_returns_the_first_number_and_creates_one_row(tenant, fresh_e164, db):
    e164 = fresh_e164()
    with tenant.numbers() as numbers:
        first = create(numbers, e164, request_id="order-42")
        again = create(numbers, e164, request_id="order-42")
        assert again.ref == first.ref
    rows = db.transaction(
        lambda s: s.scalar(select(func.count()).select_from(Number).where(Number.e164_number == e164)), write=False
    )
    assert rows == 1


def test_twenty_concurrent_creates_of_one_e164_one_wins(tenant, fresh_e164, db):
    e164 = fresh_e164()

    async def race() -> list[object]:
        async with tenant.async_numbers() as numbers:
            attempts = [
                numbers.create_number(provider_ref="t", e164_number=e164, aor_link=f"sip:{i}@sip.local")
                for i in range(20)
            ]
            return await asyncio.gather(*attempts, return_exceptions=True)

    results = asyncio.run(race())
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1
    assert all(isinstance(r, AlreadyExistsError) for r in losers), losers
    rows = db.transaction(
        lambda s: s.scalar(select(func.count()).select_from(Number).where(Number.e164_number == e164)), write=False
    )
    assert rows == 1


def test_concurrent_retries_of_one_request_id_create_one_number(tenant, fresh_e164):
    e164 = fresh_e164()

    async def race() -> list[object]:
        async with tenant.async_numbers() as numbers:
            retries = [
                numbers.create_number(provider_ref="t", e164_number=e164, aor_link="sip:a@b.c", request_id="same")
                for _ in range(10)
            ]
            return await asyncio.gather(*retries)

    assert len({n.ref for n in asyncio.run(race())}) == 1


def test_get_unknown_and_empty_ref(tenant):
    with tenant.numbers() as numbers:
        with pytest.raises(NotFoundError) as caught:
            numbers.get_number("nope")
        assert "'nope'" in caught.value.message
        with pytest.raises(InvalidArgumentError) as caught:
            numbers.get_number("")
        assert violated_fields(caught.value) == {"ref"}


def test_update_is_partial_and_moves_the_etag(tenant, fresh_e164):
    with tenant.numbers() as numbers:
        number = create(numbers, fresh_e164(), name="old")
        renamed = numbers.update_number(ref=number.ref, name="new")
        assert renamed.name == "new"
        assert renamed.provider_ref == number.provider_ref
        assert renamed.aor_link == number.aor_link
        assert renamed.etag != number.etag
        assert renamed.update_time.ToDatetime() >= number.update_time.ToDatetime()
        assert numbers.get_number(number.ref) == renamed


def test_update_switches_routing_both_ways(tenant, fresh_e164):
    with tenant.numbers() as numbers:
        number = create(numbers, fresh_e164())
        to_app = numbers.update_number(ref=number.ref, ingress_info={"webhook": "https://x.example.com/h"})
        assert to_app.WhichOneof("routing") == "ingress_info"
        assert to_app.ingress_info.webhook == "https://x.example.com/h"
        back = numbers.update_number(ref=number.ref, aor_link="sips:1002@sip.local;transport=tls")
        assert back.WhichOneof("routing") == "aor_link"
        assert back.aor_link == "sips:1002@sip.local;transport=tls"
        assert not back.HasField("ingress_info")


def test_update_mask_sets_clears_and_leaves_alone_every_kind_of_field(tenant, fresh_e164):
    """AIP-134: the mask names what changes; a named field at its default is cleared; without a mask, the
    fields set change. The Python client fills the mask from the fields it is given."""
    with tenant.numbers() as numbers:
        number = numbers.create_number(
            e164_number=fresh_e164(), provider_ref="trunk-1", name="Sales", aor_link="sip:1@sip.local",
            settings={"recording_enabled": True, "caller_id_prefix": "S:", "context": "NUMBER_CONTEXT_UTILITY"},
        )
        cleared = numbers.update_number(ref=number.ref, name="", settings={"recording_enabled": False})
        assert (cleared.name, cleared.recording_enabled) == ("", False)
        assert (cleared.caller_id_prefix, cleared.context, cleared.aor_link) == ("S:", pb.NUMBER_CONTEXT_UTILITY,
                                                                                 "sip:1@sip.local")
        unrouted = numbers.update_number(ref=number.ref, update_mask="aorLink")  # named, not set: cleared
        assert unrouted.WhichOneof("routing") is None and unrouted.provider_ref == "trunk-1"
        defaults = numbers.update_number(ref=number.ref, update_mask="settings")  # all four back to defaults
        assert (defaults.caller_id_prefix, defaults.context) == ("", pb.NUMBER_CONTEXT_INCOMING)
        # A raw request without a mask changes what it sets, and nothing else.
        implicit = numbers.update_number(pb.UpdateNumberRequest(ref=number.ref, name="Support"))
        assert (implicit.name, implicit.provider_ref) == ("Support", "trunk-1")
        with pytest.raises(InvalidArgumentError) as caught:
            numbers.update_number(ref=number.ref, name="x", update_mask="name,e164Number")
        assert violated_fields(caught.value) == {"update_mask"}
        assert numbers.get_number(number.ref).name == "Support"


def test_update_with_stale_etag_is_aborted_and_changes_nothing(tenant, fresh_e164):
    with tenant.numbers() as numbers:
        number = create(numbers, fresh_e164(), name="first")
        current = numbers.update_number(ref=number.ref, name="second", etag=number.etag)
        with pytest.raises(AbortedError):
            numbers.update_number(ref=number.ref, name="third", etag=number.etag)
        assert numbers.get_number(number.ref).name == "second"
        assert numbers.update_number(ref=number.ref, name="third", etag=current.etag).name == "third"


def test_update_rejects_bad_values_and_unknown_ref(tenant, fresh_e164):
    with tenant.numbers() as numbers:
        number = create(numbers, fresh_e164())
        with pytest.raises(InvalidArgumentError) as caught:
            numbers.update_number(ref=number.ref, provider_ref="", aor_link="tel:+1")
        assert violated_fields(caught.value) == {"provider_ref", "aor_link"}
        with pytest.raises(NotFoundError):
            numbers.update_number(ref="missing", name="x")
        assert numbers.get_number(number.ref) == number


def test_delete_then_the_e164_can_be_created_again(tenant, fresh_e164):
    e164 = fresh_e164()
    with tenant.numbers() as numbers:
        number = create(numbers, e164)
        with pytest.raises(AbortedError):
            numbers.delete_number(ref=number.ref, etag="stale-etag")
        numbers.delete_number(number.ref)
        with pytest.raises(NotFoundError):
            numbers.get_number(number.ref)
        with pytest.raises(NotFoundError):
            numbers.delete_number(number.ref)
        assert create(numbers, e164).ref != number.ref


def test_list_walks_every_page_in_creation_order(tenant, fresh_e164):
    with tenant.numbers() as numbers:
        created = [create(numbers, fresh_e164()).ref for _ in range(5)]
        seen, token, pages = [], "", 0
        while True:
            page = numbers.list_numbers(page_size=2, page_token=token)
            seen += [n.ref for n in page.numbers]
            pages += 1
            token = page.next_page_token
            if not token:
                break
        assert seen == created
        assert pages == 3
        assert [n.ref for n in numbers.iter_numbers(page_size=2)] == created
        assert [n.ref for n in numbers.list_numbers().numbers] == created  # default page size 20


def test_list_page_size_rules(tenant, fresh_e164):
    with tenant.numbers() as numbers:
        create(numbers, fresh_e164())
        with pytest.raises(InvalidArgumentError) as caught:
            numbers.list_numbers(page_size=-1)
        assert violated_fields(caught.value) == {"page_size"}
        assert len(numbers.list_numbers(page_size=100000).numbers) == 1


def test_list_rejects_tampered_and_foreign_tokens(tenant, other_tenant, fresh_e164):
    with tenant.numbers() as mine, other_tenant.numbers() as theirs:
        for _ in range(3):
            create(mine, fresh_e164())
            create(theirs, fresh_e164())
        token = mine.list_numbers(page_size=1).next_page_token
        raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        raw[-1] ^= 1  # flip a bit of the position
        tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
        for bad in (tampered, "garbage!", token[:-2]):
            with pytest.raises(InvalidArgumentError) as caught:
                mine.list_numbers(page_size=1, page_token=bad)
            assert violated_fields(caught.value) == {"page_token"}
        with pytest.raises(InvalidArgumentError):
            theirs.list_numbers(page_size=1, page_token=token)


def test_ingress_info_of_own_number(tenant, fresh_e164):
    e164 = fresh_e164()
    with tenant.numbers() as numbers:
        number = numbers.create_number(provider_ref="t", e164_number=e164,
                                       ingress_info={"webhook": "https://hooks.example.com/ivr"})
        info = numbers.get_ingress_info(e164)
        assert info.number_ref == number.ref
        assert info.e164_number == e164
        assert info.workspace_ref == tenant.ref
        assert info.ingress_info.webhook == "https://hooks.example.com/ivr"
        assert numbers.get_ingress_info(e164_number=f"+1 {e164[2:]}").number_ref == number.ref


def test_ingress_info_across_workspaces_only_for_service_keys(tenant, other_tenant, fresh_e164):
    e164 = fresh_e164()
    with tenant.numbers() as owner:
        create(owner, e164)
    with other_tenant.numbers(Role.MEMBER) as member, pytest.raises(NotFoundError):
        member.get_ingress_info(e164)
    with other_tenant.numbers(Role.ADMIN) as admin, pytest.raises(NotFoundError):
        admin.get_ingress_info(e164)
    with other_tenant.numbers(Role.SERVICE) as edge:
        info = edge.get_ingress_info(e164)
        assert info.workspace_ref == tenant.ref
        assert info.aor_link == "sip:1001@sip.local"


def test_ingress_info_errors(tenant, fresh_e164):
    with tenant.numbers(Role.SERVICE) as numbers:
        with pytest.raises(NotFoundError):
            numbers.get_ingress_info(fresh_e164())
        with pytest.raises(InvalidArgumentError) as caught:
            numbers.get_ingress_info("12")
        assert violated_fields(caught.value) == {"e164_number"}


def test_async_client_walks_pages(tenant, fresh_e164):
    async def run() -> list[str]:
        async with tenant.async_numbers() as numbers:
            for _ in range(3):
                await numbers.create_number(provider_ref="t", e164_number=fresh_e164(), aor_link="sip:a@b.c")
            return [n.ref async for n in numbers.iter_numbers(page_size=2)]

    assert len(asyncio.run(run())) == 3
