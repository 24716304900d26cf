"""Inbound calls: the simulated network reports a call to a number, Calls asks Numbers (GetIngressInfo, with
a service key) where it goes and routes it; SimulateInboundCall and `voxplane calls simulate-inbound`
inject one."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from voxplane import InvalidArgumentError, NotFoundError, PermissionDeniedError
from voxplane.calls.v1 import calls_pb2 as pb
from voxplane.numbers.v1 import numbers_pb2
from voxplane.services.calls import gateway, inbound
from voxplane.services.calls.models import Call
from voxplane.services.calls.runner import Runner
from voxplane.services.core.auth import Role
from voxplane.services.core.errors import FailedPrecondition

from .test_calls import S, fields_of, wait_for
from .webhook_receiver import Receiver, Reply

H = pb.HangupCause
CALLER = "+4921155500101"
VOXPLANE = str(Path(sys.executable).parent / "voxplane")


def number(tenant, e164: str, **routing):  # type: ignore[no-untyped-def]
    with tenant.numbers() as numbers:
        return numbers.create_number(provider_ref="trunk-1", e164_number=e164, **routing)


def inject(tenant, destination: str, source: str = CALLER, digits: str = "") -> pb.SimulateInboundCallResponse:  # type: ignore[no-untyped-def]
    with tenant.calls(Role.OPERATOR) as calls:
        return calls.simulate_inbound_call(source=source, destination=destination, digits=digits)


@pytest.mark.parametrize("route", ["aor_link", "forward_sip_to"])
def test_a_number_routed_to_a_sip_target_rings_it_and_it_answers(tenant, network, fresh_e164, route):
    target = "sip:1001@pbx.example.com"
    e164 = number(tenant, fresh_e164(), **{route: target}).e164_number

    routed = inject(tenant, e164)

    call = routed.call
    assert routed.hangup_cause == H.HANGUP_CAUSE_UNSPECIFIED
    assert (call.direction, call.source, call.destination, call.caller_id) == (
        pb.DIRECTION_INBOUND, CALLER, e164, CALLER
    )
    assert call.status == S.CALL_STATUS_QUEUED
    with tenant.calls() as calls:
        answered = wait_for(calls, call.ref, S.CALL_STATUS_IN_PROGRESS)
    assert [p.number for p in answered.participants] == [CALLER, e164]
    assert network.orders_of(call.ref) == [("dial", ((target,), CALLER, 30))]


@pytest.mark.usefixtures("webhooks")
def test_a_number_routed_to_a_webhook_asks_it_with_new_call_and_the_reply_decides(tenant, network, fresh_e164):
    script = Receiver(by_type={"call.new_call": Reply(json.dumps({"action": "dial", "targets": [gateway.ANSWERS]}))})
    try:
        e164 = number(tenant, fresh_e164(), ingress_info={"webhook": script.url()}).e164_number
        call = inject(tenant, e164).call
        assert call.webhook == script.url()  # its events are delivered there too
        with tenant.calls() as calls:
            answered = wait_for(calls, call.ref, S.CALL_STATUS_IN_PROGRESS)
    finally:
        script.close()
    new_call = script.of_type("call.new_call")[0]
    assert new_call.event["data"]["callRef"] == call.ref
    assert new_call.headers["webhook-id"] == new_call.event["data"]["eventId"]
    assert [p.number for p in answered.participants] == [CALLER, e164, gateway.ANSWERS]
    assert network.orders_of(call.ref) == [("dial", ((gateway.ANSWERS,), CALLER, 30))]


def test_an_unknown_number_is_rejected_not_found_and_nothing_is_stored(tenant, db, network, fresh_e164):
    e164 = fresh_e164()
    stored_before = db.transaction(lambda s: s.scalar(select(func.count()).select_from(Call)), write=False)

    routed = inject(tenant, e164)

    assert not routed.HasField("call")
    assert routed.hangup_cause == H.HANGUP_CAUSE_NOT_FOUND
    assert db.transaction(lambda s: s.scalar(select(func.count()).select_from(Call)), write=False) == stored_before
    assert ("reject", ("NOT_FOUND",)) in [(order, args) for _, order, args in list(network.gateway.orders)]


def test_a_suspended_numbers_call_is_rejected_not_found_and_kept_in_its_workspace(tenant, network, fresh_e164):
    created = number(tenant, fresh_e164(), aor_link="sip:1001@pbx.example.com")
    with tenant.numbers() as numbers:
        numbers.suspend_number(created.ref)

    routed = inject(tenant, created.e164_number)

    call = routed.call
    assert (call.direction, call.status, call.hangup_cause) == (
        pb.DIRECTION_INBOUND, S.CALL_STATUS_FAILED, H.HANGUP_CAUSE_NOT_FOUND
    )
    with tenant.calls() as calls:
        assert calls.get_call(call.ref).status == S.CALL_STATUS_FAILED
    assert network.orders_of(call.ref) == [("reject", ("NOT_FOUND",))]


def test_get_ingress_info_answers_for_a_suspended_number_only_when_asked(tenant, fresh_e164):
    created = number(tenant, fresh_e164(), aor_link="sip:1001@pbx.example.com")
    with tenant.numbers(Role.SERVICE) as numbers:
        numbers.suspend_number(created.ref)
        with pytest.raises(NotFoundError):
            numbers.get_ingress_info(created.e164_number)
        found = numbers.get_ingress_info(e164_number=created.e164_number, include_suspended=True)
        numbers.activate_number(created.ref)
        active = numbers.get_ingress_info(e164_number=created.e164_number, include_suspended=True)
    assert (found.workspace_ref, found.state) == (tenant.ref, numbers_pb2.NUMBER_STATE_SUSPENDED)
    assert active.state == numbers_pb2.NUMBER_STATE_ACTIVE


def test_a_number_of_another_workspace_is_routed_in_its_workspace(tenant, other_tenant, fresh_e164):
    e164 = number(other_tenant, fresh_e164(), aor_link="sip:1001@pbx.example.com").e164_number

    call = inject(tenant, e164).call  # the operator key of `tenant` acts for the network

    with other_tenant.calls() as calls:
        assert calls.get_call(call.ref).direction == pb.DIRECTION_INBOUND
    with tenant.calls() as calls, pytest.raises(NotFoundError):
        calls.get_call(call.ref)


@pytest.mark.parametrize("role", [Role.ADMIN, Role.MEMBER, Role.SERVICE, Role.READER])
def test_only_an_operator_key_may_inject_a_call(tenant, fresh_e164, role):
    with tenant.calls(role) as calls, pytest.raises(PermissionDeniedError, match="operator"):
        calls.simulate_inbound_call(source=CALLER, destination=fresh_e164())


@pytest.mark.parametrize(("fields", "bad"), [
    ({"source": CALLER, "destination": "12"}, "destination"),
    ({"source": CALLER, "destination": "sip:1001@pbx.example.com"}, "destination"),
    ({"source": "", "destination": "+14155550100"}, "source"),
    ({"source": "not a party", "destination": "+14155550100"}, "source"),
    ({"source": CALLER, "destination": "+14155550100", "digits": "12x"}, "digits"),
    ({"source": CALLER, "destination": "+14155550100", "digits": "1" * 65}, "digits"),
])
def test_malformed_fields_are_invalid_argument_naming_them(tenant, fields, bad):
    with tenant.calls(Role.OPERATOR) as calls, pytest.raises(InvalidArgumentError) as refused:
        calls.simulate_inbound_call(**fields)
    assert fields_of(refused.value) == {bad}


def test_a_sip_caller_is_anonymous(tenant, fresh_e164):
    e164 = number(tenant, fresh_e164(), aor_link="sip:1001@pbx.example.com").e164_number

    call = inject(tenant, e164, source="sip:alice@carrier.example.net").call

    assert (call.source, call.caller_id) == ("sip:alice@carrier.example.net", "")


async def _takes_the_order(*_: object) -> None:
    pass


# Any network but the simulated one (every order taken, nothing done): it has no calls to inject.
RealNetwork = type("RealNetwork", (gateway.CallGateway,),
                   dict.fromkeys(gateway.CallGateway.__abstractmethods__, _takes_the_order))


def test_simulating_a_call_is_refused_on_any_other_network(db):
    runner = Runner(db)
    runner.gateway = RealNetwork(runner.gateway.report)

    with pytest.raises(FailedPrecondition, match="not the simulated one"):
        asyncio.run(runner.simulate_inbound(inbound.SimulatedCall(CALLER, "+14155550100", "")))


def test_the_cli_injects_a_call_and_prints_it(server, tenant, fresh_e164):
    e164 = number(tenant, fresh_e164(), aor_link="sip:1001@pbx.example.com").e164_number
    env = {**os.environ, "VOXPLANE_API_KEY": tenant.keys[Role.OPERATOR]}

    done = subprocess.run(
        [VOXPLANE, "calls", "simulate-inbound", "--from", CALLER, "--to", e164, "--endpoint", server.address],
        env=env, capture_output=True, text=True, timeout=60,
    )

    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert (printed["call"]["direction"], printed["call"]["destination"]) == ("DIRECTION_INBOUND", e164)


def test_the_cli_says_what_was_refused(server, tenant):
    done = subprocess.run(
        [VOXPLANE, "calls", "simulate-inbound", "--from", CALLER, "--to", "12", "--endpoint", server.address,
         "--api-key", tenant.keys[Role.OPERATOR]],
        capture_output=True, text=True, timeout=60,
    )

    assert done.returncode == 1
    assert "INVALID_ARGUMENT" in done.stderr and "destination:" in done.stderr


def test_an_unknown_gateway_stops_the_server_naming_the_setting(tmp_path):
    env = {**os.environ, "VOXPLANE_CALL_GATEWAY": "asterisk", "VOXPLANE_DATA_DIR": str(tmp_path)}

    done = subprocess.run([VOXPLANE, "serve", "calls", "--port", "0"], env=env, capture_output=True, text=True,
                          timeout=60)

    assert done.returncode == 1
    assert "VOXPLANE_CALL_GATEWAY" in done.stderr and "simulated" in done.stderr


def test_a_calls_server_warns_at_start_that_its_network_and_inbound_calls_are_simulated(db, caplog):
    runner = Runner(db)

    async def start_and_stop() -> None:
        await runner.start("127.0.0.1:1")
        await runner.close()

    with caplog.at_level(logging.WARNING, logger="voxplane.calls"):
        asyncio.run(start_and_stop())

    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("SIMULATED" in message and "inbound calls" in message for message in warned), warned
