"""Toll-fraud guards over a real channel: each workspace's CallSettings (countries, costly number types,
a cap on concurrent calls), checked by CreateCall and TransferCall, on both backends."""

from __future__ import annotations

import asyncio

import grpc
import phonenumbers
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from voxplane import InvalidArgumentError, NotFoundError, PermissionDeniedError, ResourceExhaustedError
from voxplane.calls.v1 import calls_pb2 as pb
from voxplane.services.calls import gateway
from voxplane.services.core.auth import Role

from . import test_calls, test_steering
from .test_calls import fields_of, new_agent, new_number, wait_for
from .test_inbound import CALLER
from .test_steering import Steered, as_json, orders

# Fixtures: an agent of the tenant, its Calls client; a webhook receiver that replies as told.
agent, calls, webhook = test_calls.agent, test_calls.calls, test_steering.webhook

S = pb.CallStatus
C = pb.CostlyNumberType
ANSWERS, STAYS_QUEUED = gateway.ANSWERS, gateway.STAYS_QUEUED
US_PREMIUM, UK_PREMIUM, DE_SHARED_COST = "+19002345678", "+449012345678", "+4918012345"
SATELLITE, INTERNATIONAL_FREEPHONE = "+881612345678", "+80012345678"
UK_LANDLINE = "+442079460000"


def test_the_example_numbers_are_what_libphonenumber_says():
    kinds = phonenumbers.PhoneNumberType
    for number, kind in ((US_PREMIUM, kinds.PREMIUM_RATE), (UK_PREMIUM, kinds.PREMIUM_RATE),
                         (DE_SHARED_COST, kinds.SHARED_COST), (UK_LANDLINE, kinds.FIXED_LINE)):
        parsed = phonenumbers.parse(number)
        assert phonenumbers.is_valid_number(parsed) and phonenumbers.number_type(parsed) == kind, number
    assert phonenumbers.region_code_for_number(phonenumbers.parse(SATELLITE)) == "001"


def test_the_defaults_allow_every_country_no_costly_type_and_no_cap(calls):
    settings = calls.get_call_settings()
    assert list(settings.allowed_countries) == [] and list(settings.allowed_costly_types) == []
    assert settings.max_concurrent_calls == 0 and settings.effective_max_concurrent_calls == 0
    assert not settings.HasField("update_time")


@pytest.mark.parametrize("to", [ANSWERS, "+15005550002", STAYS_QUEUED, "+15005550061", INTERNATIONAL_FREEPHONE,
                                UK_LANDLINE, "sip:bob@sip.example.com"])
def test_the_defaults_let_the_simulated_networks_numbers_and_ordinary_ones_through(calls, agent, to):
    call = calls.create_call(source=agent.ref, destination=to)
    assert call.status == S.CALL_STATUS_QUEUED


def test_an_on_net_destination_is_allowed_in_its_country(tenant, other_tenant, calls, agent, fresh_e164):
    on_net = new_number(other_tenant, fresh_e164())
    calls.update_call_settings(allowed_countries=["US"])
    assert calls.create_call(source=agent.ref, destination=on_net).destination == on_net


@pytest.mark.parametrize(("to", "kind", "words"), [
    (US_PREMIUM, C.COSTLY_NUMBER_TYPE_PREMIUM_RATE, "premium-rate"),
    (UK_PREMIUM, C.COSTLY_NUMBER_TYPE_PREMIUM_RATE, "premium-rate"),
    (DE_SHARED_COST, C.COSTLY_NUMBER_TYPE_SHARED_COST, "shared-cost"),
    (SATELLITE, C.COSTLY_NUMBER_TYPE_GLOBAL_NETWORK, "global-network"),
])
def test_a_costly_destination_is_refused_until_its_type_is_allowed(calls, agent, to, kind, words):
    with pytest.raises(PermissionDeniedError) as refused:
        calls.create_call(source=agent.ref, destination=to)
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert f"{to} is a {words} number" in refused.value.message
    assert f"allowed_costly_types: add {C.Name(kind)}" in refused.value.message
    assert not calls.list_calls().calls  # nothing was stored, so nothing was dialled
    settings = calls.update_call_settings(allowed_costly_types=[kind])
    assert list(settings.allowed_costly_types) == [kind] and settings.HasField("update_time")
    assert calls.create_call(source=agent.ref, destination=to).status == S.CALL_STATUS_QUEUED


def test_a_country_not_allowed_is_refused_naming_it(calls, agent):
    settings = calls.update_call_settings(allowed_countries=["us", "CA", "US"])
    assert list(settings.allowed_countries) == ["CA", "US"]
    with pytest.raises(PermissionDeniedError) as refused:
        calls.create_call(source=agent.ref, destination=UK_LANDLINE)
    assert refused.value.message == (
        f"destination {UK_LANDLINE} is in GB, which this workspace's call settings do not allow "
        "(allowed_countries: CA, US)."
    )
    # A global network's number is in no country: a list refuses it, whatever its type allows.
    calls.update_call_settings(allowed_costly_types=[C.COSTLY_NUMBER_TYPE_GLOBAL_NETWORK])
    with pytest.raises(PermissionDeniedError, match="global network, in no country"):
        calls.create_call(source=agent.ref, destination=SATELLITE)
    assert calls.create_call(source=agent.ref, destination=ANSWERS).destination == ANSWERS
    # An empty list, named in the mask, is every country again.
    calls.update_call_settings(pb.UpdateCallSettingsRequest(update_mask=FieldMask(paths=["allowed_countries"])))
    assert calls.create_call(source=agent.ref, destination=UK_LANDLINE).destination == UK_LANDLINE


def test_a_transfer_to_a_destination_not_allowed_is_refused(calls, agent, network):
    call = wait_for(calls, calls.create_call(source=agent.ref, destination=ANSWERS).ref, S.CALL_STATUS_IN_PROGRESS)
    with pytest.raises(PermissionDeniedError, match="premium-rate"):
        calls.transfer_call(ref=call.ref, destination=UK_PREMIUM)
    calls.update_call_settings(allowed_countries=["US"])
    with pytest.raises(PermissionDeniedError, match="is in GB"):
        calls.transfer_call(ref=call.ref, destination=UK_LANDLINE)
    assert [order for order, _ in network.orders_of(call.ref)] == ["originate"]  # neither reached the network
    with pytest.raises(NotFoundError):  # the call is looked for first
        calls.transfer_call(ref="0" * 28, destination=UK_PREMIUM)
    moved = calls.transfer_call(ref=call.ref, destination="+15005550001", attended=True)
    assert [p.number for p in moved.participants][-1] == ANSWERS
    calls.hangup_call(call.ref)


@pytest.mark.usefixtures("webhooks")
def test_a_webhooks_dial_to_a_destination_not_allowed_ends_the_call_undialled(tenant, calls, network, fresh_e164,
                                                                             webhook):
    steered = Steered(tenant, fresh_e164, webhook(as_json(action="dial", targets=[ANSWERS, UK_PREMIUM])))
    ended = steered.becomes(S.CALL_STATUS_NO_ANSWER)
    assert orders(network, steered.ref, 1) == [("reject", ("NO_ANSWER",))]
    assert UK_PREMIUM not in [p.number for p in ended.participants]
    calls.update_call_settings(allowed_costly_types=[C.COSTLY_NUMBER_TYPE_PREMIUM_RATE])
    allowed = Steered(tenant, fresh_e164, webhook(as_json(action="dial", targets=[UK_PREMIUM])))
    allowed.becomes(S.CALL_STATUS_IN_PROGRESS)
    assert orders(network, allowed.ref, 1) == [("dial", ((UK_PREMIUM,), CALLER, 30))]


def test_the_cap_refuses_a_call_over_it_until_one_ends(calls, agent):
    calls.update_call_settings(max_concurrent_calls=2)
    first, second = (wait_for(calls, calls.create_call(source=agent.ref, destination=ANSWERS).ref,
                              S.CALL_STATUS_IN_PROGRESS) for _ in range(2))
    with pytest.raises(ResourceExhaustedError) as refused:
        calls.create_call(source=agent.ref, destination=ANSWERS)
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.message == (
        "The workspace's running calls (2) are at its cap on concurrent calls (max_concurrent_calls 2); "
        "end one, or raise max_concurrent_calls in the call settings."
    )
    calls.hangup_call(first.ref)
    third = calls.create_call(source=agent.ref, destination=ANSWERS)
    assert third.status == S.CALL_STATUS_QUEUED
    assert {c.ref for c in calls.list_active_calls().calls} == {second.ref, third.ref}
    for ref in (second.ref, third.ref):
        calls.hangup_call(wait_for(calls, ref, S.CALL_STATUS_IN_PROGRESS).ref)


def test_the_cap_counts_only_the_workspaces_own_calls(tenant, other_tenant, calls, agent):
    calls.update_call_settings(max_concurrent_calls=1)
    with other_tenant.calls() as others:
        other_agent = new_agent(other_tenant)
        others.update_call_settings(max_concurrent_calls=1)
        theirs = others.create_call(source=other_agent.ref, destination=STAYS_QUEUED)
        ours = calls.create_call(source=agent.ref, destination=STAYS_QUEUED)
        others.cancel_call(theirs.ref)
    calls.cancel_call(ours.ref)


def test_the_deployment_default_applies_while_the_workspace_sets_none(calls, agent, environment):
    environment.set(VOXPLANE_CALLS_MAX_CONCURRENT="1")
    assert calls.get_call_settings().effective_max_concurrent_calls == 1
    first = calls.create_call(source=agent.ref, destination=STAYS_QUEUED)
    with pytest.raises(ResourceExhaustedError, match="VOXPLANE_CALLS_MAX_CONCURRENT 1, max_concurrent_calls being 0"):
        calls.create_call(source=agent.ref, destination=STAYS_QUEUED)
    # The workspace's own cap wins over the deployment's.
    assert calls.update_call_settings(max_concurrent_calls=2).effective_max_concurrent_calls == 2
    second = calls.create_call(source=agent.ref, destination=STAYS_QUEUED)
    for ref in (first.ref, second.ref):
        calls.cancel_call(ref)


def test_creates_racing_at_the_cap_let_exactly_one_through(tenant, agent):
    with tenant.calls() as calls:
        calls.update_call_settings(max_concurrent_calls=1)

    async def race() -> list[object]:
        async with tenant.async_calls() as calls:
            return await asyncio.gather(
                *(calls.create_call(source=agent.ref, destination=STAYS_QUEUED) for _ in range(8)),
                return_exceptions=True,
            )

    outcomes = asyncio.run(race())
    placed = [o for o in outcomes if isinstance(o, pb.Call)]
    assert len(placed) == 1, outcomes
    assert all(isinstance(o, ResourceExhaustedError) for o in outcomes if o not in placed), outcomes
    with tenant.calls() as calls:
        assert [c.ref for c in calls.list_active_calls().calls] == [placed[0].ref]
        calls.cancel_call(placed[0].ref)


@pytest.mark.parametrize(("update", "field"), [
    ({"allowed_countries": ["GB", "XX"]}, "allowed_countries[1]"),
    ({"allowed_countries": ["001"]}, "allowed_countries[0]"),
    ({"allowed_countries": ["GBR"]}, "allowed_countries[0]"),
    ({"allowed_countries": ["US"] * 251}, "allowed_countries"),
    ({"allowed_costly_types": [C.COSTLY_NUMBER_TYPE_UNSPECIFIED]}, "allowed_costly_types[0]"),
    ({"allowed_costly_types": [C.COSTLY_NUMBER_TYPE_PREMIUM_RATE, 99]}, "allowed_costly_types[1]"),
    ({"max_concurrent_calls": -1}, "max_concurrent_calls"),
    ({"max_concurrent_calls": 1_000_001}, "max_concurrent_calls"),
    ({"update_mask": FieldMask(paths=["help_reply"])}, "update_mask"),
])
def test_a_bad_update_is_invalid_argument_naming_the_field_and_changes_nothing(calls, update, field):
    with pytest.raises(InvalidArgumentError) as refused:
        calls.update_call_settings(pb.UpdateCallSettingsRequest(**update))
    assert fields_of(refused.value) == {field}
    assert not calls.get_call_settings().HasField("update_time")


def test_every_problem_of_an_update_is_told_at_once(calls):
    with pytest.raises(InvalidArgumentError) as refused:
        calls.update_call_settings(allowed_countries=["ZZ"], max_concurrent_calls=-5)
    assert fields_of(refused.value) == {"allowed_countries[0]", "max_concurrent_calls"}


def test_the_mask_changes_only_what_it_names(calls):
    calls.update_call_settings(allowed_countries=["DE"], max_concurrent_calls=5)
    changed = calls.update_call_settings(pb.UpdateCallSettingsRequest(
        allowed_countries=["FR"], max_concurrent_calls=9, update_mask=FieldMask(paths=["max_concurrent_calls"])
    ))
    assert list(changed.allowed_countries) == ["DE"] and changed.max_concurrent_calls == 9
    assert calls.get_call_settings() == changed


def test_settings_are_the_workspaces_own_and_a_reader_cannot_change_them(tenant, other_tenant, calls):
    calls.update_call_settings(allowed_countries=["DE"])
    with other_tenant.calls() as others:
        assert list(others.get_call_settings().allowed_countries) == []
    with tenant.calls(Role.READER) as reader:
        assert list(reader.get_call_settings().allowed_countries) == ["DE"]
        with pytest.raises(PermissionDeniedError, match="reader role"):
            reader.update_call_settings(allowed_countries=[])
