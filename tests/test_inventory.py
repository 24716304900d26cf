"""The inventory and the lifecycle: import, find, reserve, acquire, activate, suspend, release."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from voxplane import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from voxplane.numbers.v1 import numbers_pb2 as pb
from voxplane.services.core.auth import Role
from voxplane.services.numbers.models import Number

from .test_grpcurl import grpcurl

# Aberdeen (01224) numbers in blocks of 100 that no other test of this worker uses.
_blocks = itertools.count(secrets.randbelow(800) + 100)
_blocks_lock = threading.Lock()


def aberdeen_block(size: int = 10) -> list[str]:
    with _blocks_lock:
        block = next(_blocks)
    return [f"+4412249{block:03d}{i:02d}" for i in range(size)]


def stock(tenant, numbers: list[str], provider_ref: str = "trunk-uk") -> None:  # type: ignore[no-untyped-def]
    with tenant.numbers(Role.OPERATOR) as operator:
        operator.import_inventory(entries=[{"e164_number": n, "provider_ref": provider_ref} for n in numbers])


def violated(error: InvalidArgumentError) -> set[str]:
    return {v.field for v in error.field_violations}


def state_name(number: pb.Number) -> str:
    return pb.NumberState.Name(number.state).removeprefix("NUMBER_STATE_")


# --- inventory


def test_operators_import_inventory_all_or_nothing(tenant):
    good, also_good = aberdeen_block(2)
    with tenant.numbers(Role.OPERATOR) as operator:
        with pytest.raises(InvalidArgumentError) as caught:
            operator.import_inventory(entries=[{"e164_number": good, "provider_ref": "t"}, {"e164_number": "+44", "provider_ref": ""}])
        assert violated(caught.value) == {"entries[1].e164_number", "entries[1].provider_ref"}
        assert operator.check_availability(e164_numbers=[good]).results[0].availability == pb.AVAILABILITY_NOT_IN_INVENTORY

        first = operator.import_inventory(entries=[{"e164_number": good, "provider_ref": "t"}])
        assert (first.added, first.already_present) == (1, 0)
        again = operator.import_inventory(
            entries=[{"e164_number": good, "provider_ref": "t"}, {"e164_number": also_good, "provider_ref": "t"}]
        )
        assert (again.added, again.already_present) == (1, 1)
        with pytest.raises(InvalidArgumentError):
            operator.import_inventory(entries=[])


@pytest.mark.parametrize("role", [Role.ADMIN, Role.MEMBER, Role.SERVICE, Role.READER])
def test_only_operators_import_inventory(tenant, role):
    with tenant.numbers(role) as numbers, pytest.raises(PermissionDeniedError) as caught:
        numbers.import_inventory(entries=[{"e164_number": aberdeen_block(1)[0], "provider_ref": "t"}])
    assert "operator" in caught.value.message


def test_available_prefixes_describe_and_count(tenant):
    stock(tenant, aberdeen_block(5))
    with tenant.numbers() as numbers:
        prefixes = {p.prefix: p for p in numbers.list_available_prefixes(region_code="GB").prefixes}
        aberdeen = prefixes["+441224"]
        assert aberdeen.description == "Aberdeen (01224)"
        assert aberdeen.national_prefix == "01224"
        assert aberdeen.region_code == "GB"
        assert aberdeen.available >= 5
        assert all(p.region_code == "GB" for p in prefixes.values())
        with pytest.raises(InvalidArgumentError) as caught:
            numbers.list_available_prefixes(region_code="XX")
        assert violated(caught.value) == {"region_code"}


def test_prefixes_with_no_place_are_described_by_kind_and_country(tenant):
    toll_free, mobile = f"+1877555{secrets.randbelow(10_000):04d}", f"+61412{secrets.randbelow(1_000_000):06d}"
    stock(tenant, [toll_free, mobile])
    with tenant.numbers() as numbers:
        us = {p.prefix: p for p in numbers.list_available_prefixes(region_code="US").prefixes}
        au = {p.prefix: p for p in numbers.list_available_prefixes(region_code="AU").prefixes}
        assert us["+1877"].description == "Toll-free, United States (877)"
        assert au["+61412"].description == "Mobile, Australia (0412)"
        found = numbers.search_available_numbers(prefix=mobile, page_size=1).numbers
        assert [n.description for n in found] == ["Mobile, Australia"]


def test_search_by_e164_or_national_prefix_pages_through(tenant):
    block = aberdeen_block(10)
    stock(tenant, block)
    e164_prefix = block[0][:-2]
    national = "0" + e164_prefix.removeprefix("+44")
    with tenant.numbers() as numbers:
        found, token = [], ""
        while True:
            page = numbers.search_available_numbers(prefix=e164_prefix, page_size=3, page_token=token)
            assert len(page.numbers) <= 3
            found += [n.e164_number for n in page.numbers]
            token = page.next_page_token
            if not token:
                break
        assert found == block
        first = numbers.search_available_numbers(prefix=national, region_code="GB", page_size=1).numbers[0]
        assert first.e164_number == block[0]
        assert first.description == "Aberdeen"
        assert first.national_format.startswith("01224")
        assert first.provider_ref == "trunk-uk"
        with pytest.raises(InvalidArgumentError) as caught:
            numbers.search_available_numbers(prefix=block[1][:-2] + "9", page_token=token or "x")
        assert violated(caught.value) == {"page_token"}
        for bad, field in (({"prefix": "abc"}, "prefix"), ({"prefix": ""}, "prefix"),
                           ({"prefix": "0122", "region_code": "XX"}, "region_code"),
                           ({"prefix": "+44", "page_size": -1}, "page_size")):
            with pytest.raises(InvalidArgumentError) as caught:
                numbers.search_available_numbers(bad)
            assert violated(caught.value) == {field}


def test_a_token_of_one_prefix_does_not_work_for_another(tenant):
    block = aberdeen_block(4)
    stock(tenant, block)
    with tenant.numbers() as numbers:
        token = numbers.search_available_numbers(prefix=block[0][:-2], page_size=1).next_page_token
        with pytest.raises(InvalidArgumentError):
            numbers.search_available_numbers(prefix="+44", page_size=1, page_token=token)


def test_check_availability_per_number(tenant, other_tenant, fresh_e164):
    free, held = aberdeen_block(2)
    stock(tenant, [free, held])
    outside = fresh_e164()
    with tenant.numbers() as numbers, other_tenant.numbers() as other:
        other.acquire_number(held)
        results = numbers.check_availability(e164_numbers=[free, held, outside, "+44 1224 " + free[7:]]).results
        assert [(r.e164_number, r.availability) for r in results] == [
            (free, pb.AVAILABILITY_AVAILABLE),
            (held, pb.AVAILABILITY_TAKEN),
            (outside, pb.AVAILABILITY_NOT_IN_INVENTORY),
            (free, pb.AVAILABILITY_AVAILABLE),
        ]
        with pytest.raises(InvalidArgumentError) as caught:
            numbers.check_availability(e164_numbers=[free, "123"])
        assert violated(caught.value) == {"e164_numbers[1]"}


# --- acquire and reserve


def test_acquire_takes_an_inventory_number_into_service(tenant, other_tenant):
    e164, = aberdeen_block(1)
    stock(tenant, [e164], provider_ref="trunk-aberdeen")
    with tenant.numbers() as numbers, other_tenant.numbers() as other:
        number = numbers.acquire_number(e164_number=e164, name="Aberdeen office")
        assert state_name(number) == "ACTIVE"
        assert number.from_inventory and number.provider_ref == "trunk-aberdeen"
        assert number.WhichOneof("routing") is None
        with pytest.raises(NotFoundError):  # acquired, but not routable until it has a routing
            numbers.get_ingress_info(e164)
        numbers.update_number(ref=number.ref, aor_link="sip:aberdeen@sip.local")
        assert numbers.get_ingress_info(e164).aor_link == "sip:aberdeen@sip.local"
        assert e164 not in [n.e164_number for n in numbers.search_available_numbers(prefix=e164).numbers]
        with pytest.raises(AlreadyExistsError):
            other.acquire_number(e164)
        with pytest.raises(FailedPreconditionError) as caught:
            numbers.acquire_number(e164)
        assert "ACTIVE" in caught.value.message


def test_acquire_what_the_inventory_lacks_is_not_found(tenant, fresh_e164):
    with tenant.numbers() as numbers:
        with pytest.raises(NotFoundError):
            numbers.acquire_number(fresh_e164())
        with pytest.raises(InvalidArgumentError):
            numbers.acquire_number("+4412")


def test_acquire_with_routing_settings_and_request_id(tenant):
    e164, = aberdeen_block(1)
    stock(tenant, [e164])
    with tenant.numbers() as numbers:
        request = {"e164_number": e164, "forward_sip_to": "sip:+441224000000@pbx.example.com",
                   "settings": {"recording_enabled": True, "context": "NUMBER_CONTEXT_UTILITY"}, "request_id": "buy-1"}
        number = numbers.acquire_number(request)
        assert numbers.acquire_number(request).ref == number.ref  # a retry
        assert number.forward_sip_to == "sip:+441224000000@pbx.example.com"
        assert number.recording_enabled and number.context == pb.NUMBER_CONTEXT_UTILITY
        route = numbers.get_ingress_info(e164)
        assert route.forward_sip_to == number.forward_sip_to and route.recording_enabled


def test_twenty_workspaces_racing_for_one_number_one_wins(new_tenant, db):
    e164, = aberdeen_block(1)
    racers = [new_tenant() for _ in range(20)]
    stock(racers[0], [e164])

    async def race() -> list[object]:
        clients = [t.async_numbers() for t in racers]
        try:
            return await asyncio.gather(*(c.acquire_number(e164) for c in clients), return_exceptions=True)
        finally:
            await asyncio.gather(*(c.close() for c in clients))

    results = asyncio.run(race())
    winners = [r for r in results if isinstance(r, pb.Number)]
    assert len(winners) == 1, results
    assert all(isinstance(r, AlreadyExistsError) for r in results if not isinstance(r, pb.Number)), results
    holders = db.transaction(
        lambda s: s.scalar(select(func.count()).select_from(Number).where(Number.e164_number == e164)), write=False
    )
    assert holders == 1
    with racers[1].numbers() as numbers:
        assert numbers.check_availability(e164_numbers=[e164]).results[0].availability == pb.AVAILABILITY_TAKEN


def test_reserve_holds_then_acquire_confirms(tenant, other_tenant):
    e164, = aberdeen_block(1)
    stock(tenant, [e164])
    with tenant.numbers() as numbers, other_tenant.numbers() as other:
        held = numbers.reserve_number(e164)
        assert state_name(held) == "RESERVED"
        remaining = held.reserve_expire_time.ToDatetime() - held.create_time.ToDatetime()
        assert timedelta(minutes=29) < remaining <= timedelta(minutes=30, seconds=1)
        with pytest.raises(AlreadyExistsError):
            other.reserve_number(e164)
        with pytest.raises(AlreadyExistsError):
            other.acquire_number(e164)
        extended = numbers.reserve_number(e164_number=e164, hold="3600s")
        assert extended.ref == held.ref and extended.reserve_expire_time.seconds > held.reserve_expire_time.seconds
        confirmed = numbers.acquire_number(e164_number=e164, name="mine now")
        assert confirmed.ref == held.ref and state_name(confirmed) == "ACTIVE"
        assert not confirmed.HasField("reserve_expire_time")


def test_an_unconfirmed_reservation_lapses_back_to_inventory(tenant, other_tenant):
    e164, = aberdeen_block(1)
    stock(tenant, [e164])
    with tenant.numbers() as numbers, other_tenant.numbers() as other:
        held = numbers.reserve_number(e164_number=e164, hold="1s")
        time.sleep(1.2)
        with pytest.raises(NotFoundError):
            numbers.get_number(held.ref)
        assert held.ref not in [n.ref for n in numbers.iter_numbers()]
        assert other.check_availability(e164_numbers=[e164]).results[0].availability == pb.AVAILABILITY_AVAILABLE
        assert state_name(other.acquire_number(e164)) == "ACTIVE"


@pytest.mark.parametrize("hold", ["0.5s", "0s", "604801s"])
def test_reservation_hold_bounds(tenant, hold):
    e164, = aberdeen_block(1)
    stock(tenant, [e164])
    with tenant.numbers() as numbers, pytest.raises(InvalidArgumentError) as caught:
        numbers.reserve_number(e164_number=e164, hold=hold)
    assert violated(caught.value) == {"hold"}


# --- lifecycle


def _number_in(numbers, state: str, e164: str) -> pb.Number:  # type: ignore[no-untyped-def]
    if state == "RESERVED":
        return numbers.reserve_number(e164)
    number = numbers.create_number(provider_ref="t", e164_number=e164, aor_link="sip:1@sip.local",
                                   porting_in=state == "PORTING_IN")
    if state == "SUSPENDED":
        number = numbers.suspend_number(number.ref)
    if state == "RELEASED":
        number = numbers.release_number(number.ref)
    assert state_name(number) == state
    return number


ALLOWED = {
    "activate": {"RESERVED", "SUSPENDED", "PORTING_IN"},
    "suspend": {"ACTIVE"},
    "release": {"RESERVED", "ACTIVE", "SUSPENDED", "PORTING_IN"},
}
RESULT = {"activate": "ACTIVE", "suspend": "SUSPENDED", "release": "RELEASED"}


@pytest.mark.parametrize("state", ["RESERVED", "ACTIVE", "SUSPENDED", "PORTING_IN", "RELEASED"])
@pytest.mark.parametrize("action", ["activate", "suspend", "release"])
def test_every_transition_is_allowed_or_refused_naming_the_state(tenant, fresh_e164, state, action):
    e164 = aberdeen_block(1)[0] if state == "RESERVED" else fresh_e164()
    if state == "RESERVED":
        stock(tenant, [e164])
    with tenant.numbers() as numbers:
        number = _number_in(numbers, state, e164)
        change = getattr(numbers, f"{action}_number")
        if state in ALLOWED[action]:
            changed = change(ref=number.ref, etag=number.etag)
            assert state_name(changed) == RESULT[action]
            assert changed.etag != number.etag
        else:
            with pytest.raises(FailedPreconditionError) as caught:
                change(number.ref)
            assert f"it is {state}, and only" in caught.value.message
            assert state_name(numbers.get_number(number.ref)) == state


def test_only_active_numbers_route(tenant, fresh_e164):
    e164 = fresh_e164()
    with tenant.numbers() as numbers:
        number = numbers.create_number(provider_ref="t", e164_number=e164, aor_link="sip:1@sip.local")
        assert numbers.get_ingress_info(e164).number_ref == number.ref
        numbers.suspend_number(number.ref)
        with pytest.raises(NotFoundError):
            numbers.get_ingress_info(e164)
        numbers.activate_number(number.ref)
        assert numbers.get_ingress_info(e164).number_ref == number.ref
        released = numbers.release_number(number.ref)
        assert released.HasField("release_time")
        with pytest.raises(NotFoundError):
            numbers.get_ingress_info(e164)


def test_a_released_number_ages_before_it_is_free_again(tenant, other_tenant, db):
    e164, = aberdeen_block(1)
    stock(tenant, [e164])
    with tenant.numbers() as numbers, other_tenant.numbers() as other:
        number = numbers.acquire_number(e164)
        numbers.release_number(number.ref)
        with pytest.raises(AlreadyExistsError) as caught:
            other.acquire_number(e164)
        assert "aging" in caught.value.message or "another workspace" in caught.value.message
        assert other.check_availability(e164_numbers=[e164]).results[0].availability == pb.AVAILABILITY_TAKEN
        # Let the aging period (30 days by default) pass.
        db.transaction(
            lambda s: s.execute(
                update(Number).where(Number.ref == number.ref).values(
                    release_time=Number.release_time - timedelta(days=31)
                )
            ),
            write=True,
        )
        assert other.check_availability(e164_numbers=[e164]).results[0].availability == pb.AVAILABILITY_AVAILABLE
        with pytest.raises(NotFoundError):
            numbers.get_number(number.ref)
        assert state_name(other.acquire_number(e164)) == "ACTIVE"


# --- ListNumbers filters


def test_list_filters_combine_with_paging(tenant, fresh_e164):
    with tenant.numbers() as numbers:
        made = []
        for i in range(6):
            made.append(numbers.create_number(
                provider_ref="trunk-a" if i % 2 else "trunk-b", e164_number=fresh_e164(),
                aor_link="sip:1@sip.local", name=f"Support line {i}" if i < 4 else f"Sales {i}",
            ))
        numbers.suspend_number(made[1].ref)
        cut = made[3].create_time

        def refs(**filters) -> list[str]:  # type: ignore[no-untyped-def]
            return [n.ref for n in numbers.iter_numbers(page_size=1, filter=filters)]

        assert refs(provider_ref="trunk-a") == [made[1].ref, made[3].ref, made[5].ref]
        assert refs(state="NUMBER_STATE_SUSPENDED") == [made[1].ref]
        assert refs(state="NUMBER_STATE_ACTIVE", provider_ref="trunk-a") == [made[3].ref, made[5].ref]
        assert refs(name_contains="SUPPORT") == [m.ref for m in made[:4]]
        assert refs(name_contains="%") == [] and refs(name_contains="_") == [] and refs(name_contains="\\") == []
        assert refs(created_after=cut.ToJsonString()) == [m.ref for m in made[3:]]
        assert refs(created_before=cut.ToJsonString()) == [m.ref for m in made[:3]]
        assert refs(e164_prefix=made[0].e164_number[:-1]) == [
            m.ref for m in made if m.e164_number.startswith(made[0].e164_number[:-1])
        ]

        routed = numbers.update_number(ref=made[2].ref, aor_link="sip:agent-7@sip.example.com")
        assert refs(aor_link="sip:agent-7@sip.example.com") == [routed.ref]

        token = numbers.list_numbers(page_size=1, filter={"provider_ref": "trunk-a"}).next_page_token
        with pytest.raises(InvalidArgumentError) as caught:
            numbers.list_numbers(page_size=1, page_token=token, filter={"provider_ref": "trunk-b"})
        assert violated(caught.value) == {"page_token"}
        for bad, field in (({"e164_prefix": "44"}, "filter.e164_prefix"), ({"state": 42}, "filter.state"),
                           ({"aor_link": "mailto:x"}, "filter.aor_link")):
            with pytest.raises(InvalidArgumentError) as caught:
                numbers.list_numbers(filter=bad)
            assert violated(caught.value) == {field}


# --- settings


def test_settings_on_create_update_and_ingress(tenant, fresh_e164):
    e164 = fresh_e164()
    with tenant.numbers() as numbers:
        number = numbers.create_number(provider_ref="t", e164_number=e164, aor_link="sip:1@sip.local")
        assert (number.recording_enabled, number.caller_id_prefix, number.caller_id_passthrough, number.context) == (
            False, "", True, pb.NUMBER_CONTEXT_INCOMING)
        changed = numbers.update_number(ref=number.ref, settings={"caller_id_prefix": "Sales:",
                                                                  "caller_id_passthrough": False})
        assert changed.caller_id_prefix == "Sales:" and not changed.caller_id_passthrough
        assert changed.recording_enabled is False and changed.context == pb.NUMBER_CONTEXT_INCOMING
        route = numbers.get_ingress_info(e164)
        assert route.caller_id_prefix == "Sales:" and route.caller_id_passthrough is False
        for bad, field in (({"caller_id_prefix": "x" * 17}, "settings.caller_id_prefix"),
                           ({"context": 9}, "settings.context")):
            with pytest.raises(InvalidArgumentError) as caught:
                numbers.update_number(ref=number.ref, settings=bad)
            assert violated(caught.value) == {field}


# --- the command line


def test_grpcurl_search_and_acquire(server, tenant):
    e164, = aberdeen_block(1)
    stock(tenant, [e164])
    key = tenant.keys[Role.MEMBER]
    found = grpcurl(server.address, "voxplane.numbers.v1.Numbers/SearchAvailableNumbers", key=key,
                    data={"prefix": e164, "page_size": 5})
    assert found.returncode == 0, found.stderr
    assert e164 in found.stdout
    acquired = grpcurl(server.address, "voxplane.numbers.v1.Numbers/AcquireNumber", key=key,
                       data={"e164_number": e164, "aor_link": "sip:1001@sip.local"})
    assert acquired.returncode == 0, acquired.stderr
    assert '"state": "NUMBER_STATE_ACTIVE"' in acquired.stdout


def test_cli_inventory_import(tmp_path, database_url):
    block = aberdeen_block(3)
    good = tmp_path / "good.csv"
    good.write_text("e164_number,provider_ref\n" + "".join(f"{n},trunk-cli\n" for n in block))
    bad = tmp_path / "bad.csv"
    bad.write_text(f"e164_number,provider_ref\n{block[0]},t\nnot-a-number,t\n")
    env = {"VOXPLANE_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
    voxplane = str(Path(sys.executable).parent / "voxplane")
    refused = subprocess.run([voxplane, "inventory", "import", str(bad)], env=env, capture_output=True, text=True)
    assert refused.returncode != 0
    assert "line 3: e164_number" in refused.stderr and "nothing was imported" in refused.stderr
    done = subprocess.run([voxplane, "inventory", "import", str(good)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "imported 3 numbers" in done.stdout
