"""Live calls over a real channel: CreateCall's rules, the state machine, control RPCs, isolation, restarts.

The server runs the SimulatedGateway: the destination picks the outcome (see services/calls/gateway.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import time
from datetime import timedelta
from typing import NamedTuple

import pytest
from sqlalchemy import func, select

from voxplane import (
    Calls,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    Numbers,
    PermissionDeniedError,
    UnavailableError,
)
from voxplane.calls.v1 import calls_pb2 as pb
from voxplane.services.calls import gateway, live, liveness, states
from voxplane.services.calls.models import Call, CallParticipant, CallRunner
from voxplane.services.calls.recorder import EventRecorder
from voxplane.services.calls.states import NetworkEvent
from voxplane.services.core.auth import Caller, Role
from voxplane.services.persistence.base import utcnow
from voxplane.services.persistence.tenancy import Workspace

from .conftest import ServerThread
from .test_grpcurl import grpcurl

S = pb.CallStatus
H = pb.HangupCause
ANSWERS, BUSY, NO_ANSWER, FAILS, NOT_FOUND = (
    gateway.ANSWERS, gateway.BUSY, gateway.NO_ANSWER, gateway.FAILS, gateway.NOT_FOUND
)
STAYS_QUEUED = gateway.STAYS_QUEUED


def new_agent(tenant, **fields):  # type: ignore[no-untyped-def]
    with tenant.agents() as agents:
        return agents.create_agent(
            name="Agent", username=f"a{secrets.token_hex(4)}", secret=f"Secret-{secrets.token_hex(8)}",
            domains=[f"sip-{secrets.token_hex(4)}.example.com"], **fields,
        )


def new_number(tenant, e164: str) -> str:  # type: ignore[no-untyped-def]
    with tenant.numbers() as numbers:
        return numbers.create_number(provider_ref="trunk-1", e164_number=e164, aor_link="sip:1001@sip.local").e164_number


def wait_for(calls, ref: str, status: int, within: float = 5.0) -> pb.Call:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while True:
        call = calls.get_call(ref)
        if call.status == status:
            return call
        assert time.monotonic() < deadline, f"call stayed {S.Name(call.status)}, expected {S.Name(status)}"
        time.sleep(0.02)


def fields_of(error: InvalidArgumentError) -> set[str]:
    return {v.field for v in error.field_violations}


@pytest.fixture
def agent(tenant):  # type: ignore[no-untyped-def]
    return new_agent(tenant)


@pytest.fixture
def calls(tenant):  # type: ignore[no-untyped-def]
    with tenant.calls() as client:
        yield client


def answered(calls, agent, to: str = ANSWERS) -> pb.Call:  # type: ignore[no-untyped-def]
    return wait_for(calls, calls.create_call(source=agent.ref, destination=to).ref, S.CALL_STATUS_IN_PROGRESS)


# --- CreateCall -------------------------------------------------------------------------------------------


def test_create_returns_the_call_at_once_queued(calls, agent, network):
    call = calls.create_call(
        source=agent.ref, destination="+1 500 555 0001", webhook="https://hooks.example.com/calls",
        metadata={"crm_id": "42"},
    )
    assert call.status == S.CALL_STATUS_QUEUED
    assert call.ref and call.source == agent.ref and call.destination == ANSWERS
    assert call.direction == pb.DIRECTION_OUTBOUND
    assert call.timeout.seconds == 30
    assert call.webhook == "https://hooks.example.com/calls"
    assert dict(call.metadata) == {"crm_id": "42"}
    assert call.hangup_cause == H.HANGUP_CAUSE_UNSPECIFIED
    assert not call.HasField("answer_time") and not call.HasField("end_time")
    assert [(p.number, p.owner) for p in call.participants] == [(agent.ref, True), (ANSWERS, False)]
    assert call.create_time.seconds > 0
    # The network is told to place it: from, the normalised to, caller_id and the default timeout.
    assert network.orders_of(call.ref) == [("originate", (agent.ref, ANSWERS, "", 30))]


@pytest.mark.parametrize(
    ("from_kind", "caller_id", "device"),
    [
        ("agent", False, False),
        ("agent", True, False),
        ("agent", True, True),
        ("number", False, True),
        ("agent", False, True),
        ("number", True, True),
    ],
    ids=["ext", "ext+callerid", "ext+callerid+device", "number+device", "ext+device", "number+callerid+device"],
)
def test_every_valid_combination_of_sipgates_table(tenant, calls, network, fresh_e164, from_kind, caller_id, device):
    from_number, shown = new_number(tenant, fresh_e164()), new_number(tenant, fresh_e164())
    request = {
        "source": from_number if from_kind == "number" else new_agent(tenant).ref,
        "destination": ANSWERS,
        "caller_id": shown if caller_id else "",
        "device_id": new_agent(tenant).ref if device else "",
    }
    call = calls.create_call(request)
    # The hierarchy: caller_id, else the device's number (these agents have none), else from's number.
    expected = shown if caller_id else from_number if from_kind == "number" else ""
    assert call.caller_id == expected
    assert call.device_id == request["device_id"]
    assert network.orders_of(call.ref) == [("originate", (request["source"], ANSWERS, expected, 30))]


def routed_number(tenant, agent, e164: str) -> str:  # type: ignore[no-untyped-def]
    """A number of the workspace that rings `agent` (routed to its AOR)."""
    with tenant.numbers() as numbers:
        aor = f"sip:{agent.username}@{agent.domains[0]}"
        return numbers.create_number(provider_ref="trunk-1", e164_number=e164, aor_link=aor).e164_number


def test_caller_id_hierarchy_uses_the_device_then_the_from_agents_number(tenant, calls, fresh_e164, environment):
    environment.set(VOXPLANE_CALLS_LOOKUP_TTL="0")  # every answer asked afresh: the suspension shows at once
    device, caller = new_agent(tenant), new_agent(tenant)
    device_number, caller_number = routed_number(tenant, device, fresh_e164()), routed_number(tenant, caller, fresh_e164())
    shown = new_number(tenant, fresh_e164())
    assert calls.create_call({"source": caller.ref, "destination": ANSWERS}).caller_id == caller_number
    assert calls.create_call({"source": caller.ref, "destination": ANSWERS, "device_id": device.ref}).caller_id == device_number
    assert calls.create_call({"source": caller.ref, "destination": ANSWERS, "device_id": device.ref,
                              "caller_id": shown}).caller_id == shown
    with tenant.numbers() as numbers:  # a suspended number does not show
        numbers.suspend_number(next(n.ref for n in numbers.iter_numbers() if n.e164_number == device_number))
    assert calls.create_call({"source": caller.ref, "destination": ANSWERS, "device_id": device.ref}).caller_id == caller_number


@pytest.mark.parametrize("caller_id", [False, True], ids=["number", "number+callerid"])
def test_a_number_from_needs_a_device(tenant, calls, fresh_e164, caller_id):
    request = {"source": new_number(tenant, fresh_e164()), "destination": ANSWERS,
               "caller_id": new_number(tenant, fresh_e164()) if caller_id else ""}
    with pytest.raises(InvalidArgumentError) as raised:
        calls.create_call(request)
    assert fields_of(raised.value) == {"device_id"}


def test_to_may_be_a_sip_uri(calls, agent):
    call = calls.create_call(source=agent.ref, destination="sip:bob@sip.example.com")
    assert call.destination == "sip:bob@sip.example.com"
    wait_for(calls, call.ref, S.CALL_STATUS_IN_PROGRESS)


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"destination": "bob"}, "destination"),
        ({"destination": ""}, "destination"),
        ({"destination": "+1500"}, "destination"),
        ({"source": ""}, "source"),
        ({"source": "+1500"}, "source"),
        ({"timeout": 121}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": 1.5}, "timeout"),
        ({"caller_id": "12"}, "caller_id"),
        ({"webhook": "ftp://example.com/x"}, "webhook"),
        ({"metadata": {f"k{i}": "v" for i in range(21)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata[k]"),
        ({"request_id": "r" * 129}, "request_id"),
    ],
)
def test_malformed_fields_are_invalid_argument_naming_them(calls, agent, fields, bad):
    with pytest.raises(InvalidArgumentError) as raised:
        calls.create_call({"source": agent.ref, "destination": ANSWERS, **fields})
    assert bad in fields_of(raised.value)


def test_limits_are_inclusive(calls, agent, network):
    call = calls.create_call(
        {"source": agent.ref, "destination": ANSWERS, "timeout": 120,
         "metadata": {**{f"k{i}": "v" for i in range(19)}, "k" * 64: "v" * 512}}
    )
    assert call.timeout.seconds == 120 and len(call.metadata) == 20
    assert network.orders_of(call.ref) == [("originate", (agent.ref, ANSWERS, "", 120))]


def test_every_party_is_checked_against_the_workspace(tenant, calls, fresh_e164):
    unowned = fresh_e164()
    with pytest.raises(InvalidArgumentError) as raised:
        calls.create_call({"source": unowned, "destination": ANSWERS, "caller_id": unowned, "device_id": "0123456789abcdef"})
    assert fields_of(raised.value) == {"source", "caller_id", "device_id"}
    with pytest.raises(InvalidArgumentError) as raised:
        calls.create_call({"source": "0123456789abcdef", "destination": ANSWERS})
    assert fields_of(raised.value) == {"source"}


def test_a_disabled_agent_cannot_place_a_call(tenant, calls):
    disabled = new_agent(tenant, enabled=False)
    with pytest.raises(InvalidArgumentError) as raised:
        calls.create_call({"source": disabled.ref, "destination": ANSWERS})
    assert fields_of(raised.value) == {"source"}


def test_what_numbers_and_agents_said_is_reused_for_the_lookup_ttl(tenant, calls, fresh_e164, environment):
    environment.set(VOXPLANE_CALLS_LOOKUP_TTL="0.5")
    device, caller = new_agent(tenant), new_agent(tenant)
    device_number, caller_number = routed_number(tenant, device, fresh_e164()), routed_number(tenant, caller, fresh_e164())
    request = {"source": caller.ref, "destination": ANSWERS, "device_id": device.ref}
    assert calls.create_call(request).caller_id == device_number
    with tenant.numbers() as numbers, tenant.agents() as agents:
        numbers.suspend_number(next(n.ref for n in numbers.iter_numbers() if n.e164_number == device_number))
        agents.update_agent(ref=device.ref, enabled=False)
    assert calls.create_call(request).caller_id == device_number  # within the TTL: the answers of the first call
    time.sleep(0.6)
    with pytest.raises(InvalidArgumentError) as raised:  # past it: asked again
        calls.create_call(request)
    assert fields_of(raised.value) == {"device_id"}
    assert calls.create_call(source=caller.ref, destination=ANSWERS).caller_id == caller_number


def test_the_answers_are_reused_by_every_key_of_the_workspace_and_no_other(tenant, other_tenant, calls, environment):
    environment.set(VOXPLANE_CALLS_LOOKUP_TTL="60")
    agent = new_agent(tenant)
    assert calls.create_call(source=agent.ref, destination=ANSWERS).ref
    with tenant.agents() as agents:
        agents.update_agent(ref=agent.ref, enabled=False)
    with tenant.calls(Role.ADMIN) as admin:  # another key of the workspace: the answer of the first call
        assert admin.create_call(source=agent.ref, destination=ANSWERS).ref
    with other_tenant.calls() as theirs, pytest.raises(InvalidArgumentError):  # another workspace: asked anew
        theirs.create_call(source=agent.ref, destination=ANSWERS)


def test_a_refusal_is_never_reused(tenant, calls, fresh_e164, environment):
    environment.set(VOXPLANE_CALLS_LOOKUP_TTL="60")
    disabled, e164 = new_agent(tenant, enabled=False), fresh_e164()
    for request in ({"source": disabled.ref}, {"source": new_agent(tenant).ref, "caller_id": e164}):
        with pytest.raises(InvalidArgumentError):
            calls.create_call({"destination": ANSWERS, **request})
    with tenant.agents() as agents:
        agents.update_agent(ref=disabled.ref, enabled=True)
    new_number(tenant, e164)
    assert calls.create_call(source=disabled.ref, destination=ANSWERS, caller_id=e164).caller_id == e164


def test_a_suspended_number_is_not_owned_for_calls(tenant, calls, fresh_e164, agent):
    e164 = fresh_e164()
    with tenant.numbers() as numbers:
        ref = numbers.create_number(provider_ref="t", e164_number=e164, aor_link="sip:1@sip.local").ref
        numbers.suspend_number(ref)
    with pytest.raises(InvalidArgumentError) as raised:
        calls.create_call({"source": agent.ref, "destination": ANSWERS, "caller_id": e164})
    assert fields_of(raised.value) == {"caller_id"}


def test_another_workspaces_numbers_and_agents_are_invalid_argument(tenant, other_tenant, calls, fresh_e164):
    theirs_number, theirs_agent = new_number(other_tenant, fresh_e164()), new_agent(other_tenant)
    mine = new_agent(tenant)
    for request, field in [
        ({"source": theirs_number, "device_id": mine.ref}, "source"),
        ({"source": mine.ref, "caller_id": theirs_number}, "caller_id"),
        ({"source": theirs_agent.ref}, "source"),
        ({"source": mine.ref, "device_id": theirs_agent.ref}, "device_id"),
    ]:
        with pytest.raises(InvalidArgumentError) as raised:
            calls.create_call({"destination": ANSWERS, **request})
        assert fields_of(raised.value) == {field}


def test_a_retry_with_the_same_request_id_returns_the_first_call(tenant, calls, agent, db, network):
    first = calls.create_call(source=agent.ref, destination=ANSWERS, request_id="retry-1")
    again = calls.create_call(source=agent.ref, destination=BUSY, request_id="retry-1")
    assert again.ref == first.ref and again.destination == ANSWERS
    count = db.transaction(
        lambda s: s.scalar(select(func.count()).select_from(Call).where(Call.request_id == "retry-1",
                                                                      Call.ref == first.ref)), write=False)
    assert count == 1
    wait_for(calls, first.ref, S.CALL_STATUS_IN_PROGRESS)
    assert network.orders_of(first.ref) == [("originate", (agent.ref, ANSWERS, "", 30))]  # placed once


def test_concurrent_tries_of_one_create_make_one_call(tenant, agent, db, network):
    async def tries() -> list[str]:
        async with tenant.async_calls() as calls:
            made = await asyncio.gather(
                *(calls.create_call(source=agent.ref, destination=ANSWERS, request_id="race-1") for _ in range(10))
            )
        return [call.ref for call in made]

    refs = asyncio.run(tries())
    assert len(set(refs)) == 1
    count = db.transaction(
        lambda s: s.scalar(select(func.count()).select_from(Call).where(Call.request_id == "race-1",
                                                                      Call.ref == refs[0])), write=False)
    assert count == 1
    assert [order for order, _ in network.orders_of(refs[0])] == ["originate"]  # placed once


def test_a_reader_key_cannot_place_calls(tenant, agent):
    with tenant.calls(Role.READER) as reader, pytest.raises(PermissionDeniedError):
        reader.create_call(source=agent.ref, destination=ANSWERS)


# --- the network drives the state machine ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "timeout", "status", "cause"),
    [
        (BUSY, 0, S.CALL_STATUS_BUSY, H.HANGUP_CAUSE_BUSY),
        (FAILS, 0, S.CALL_STATUS_FAILED, H.HANGUP_CAUSE_CONGESTION),
        (NOT_FOUND, 0, S.CALL_STATUS_FAILED, H.HANGUP_CAUSE_NOT_FOUND),
        (NO_ANSWER, 1, S.CALL_STATUS_NO_ANSWER, H.HANGUP_CAUSE_NO_ANSWER),
        (STAYS_QUEUED, 1, S.CALL_STATUS_NO_ANSWER, H.HANGUP_CAUSE_NO_ANSWER),
        ("+15005550060", 0, S.CALL_STATUS_COMPLETED, H.HANGUP_CAUSE_NORMAL_CLEARING),
    ],
)
def test_the_destination_picks_the_outcome(calls, agent, to, timeout, status, cause):
    ref = calls.create_call(source=agent.ref, destination=to, **({"timeout": timeout} if timeout else {})).ref
    ended = wait_for(calls, ref, status)
    assert ended.hangup_cause == cause
    assert ended.HasField("end_time")
    assert ended.HasField("answer_time") == (status == S.CALL_STATUS_COMPLETED)


def test_a_call_rings_is_answered_and_the_far_end_hangs_up(calls, agent):
    ref = calls.create_call(source=agent.ref, destination="+15005550061").ref
    wait_for(calls, ref, S.CALL_STATUS_RINGING)
    in_progress = wait_for(calls, ref, S.CALL_STATUS_IN_PROGRESS)
    assert in_progress.HasField("answer_time") and not in_progress.HasField("end_time")
    completed = wait_for(calls, ref, S.CALL_STATUS_COMPLETED)
    assert completed.hangup_cause == H.HANGUP_CAUSE_NORMAL_CLEARING
    assert completed.duration.ToTimedelta().total_seconds() >= 0.9


# --- live control ------------------------------------------------------------------------------------------


def test_control_rpcs_on_a_call_in_progress(calls, agent):
    ref = answered(calls, agent).ref
    muted = calls.mute_call(ref, mute=True)
    assert muted.muted and [p.muted for p in muted.participants] == [True, False]
    assert not calls.mute_call(ref, mute=False).muted
    held = calls.hold_call(ref, hold=True)
    assert held.on_hold and [p.on_hold for p in held.participants] == [False, True]
    assert not calls.hold_call(ref, hold=False).on_hold
    assert calls.record_call(ref, start=True).recording
    assert not calls.record_call(ref, start=False).recording
    assert calls.play_audio(ref, url="https://cdn.example.com/hello.wav").status == S.CALL_STATUS_IN_PROGRESS
    assert calls.send_dtmf(ref, digits="0123456789*#ABCD").status == S.CALL_STATUS_IN_PROGRESS
    redirected = calls.redirect_call(ref, webhook="https://hooks.example.com/app-2")
    assert redirected.webhook == "https://hooks.example.com/app-2"
    consulted = calls.transfer_call(ref, destination="+1 500 555 0001", attended=True)
    assert consulted.status == S.CALL_STATUS_IN_PROGRESS
    assert [p.number for p in consulted.participants][-1] == ANSWERS
    hung_up = calls.hangup_call(ref)
    assert hung_up.status == S.CALL_STATUS_COMPLETED and hung_up.hangup_cause == H.HANGUP_CAUSE_NORMAL_CLEARING
    assert hung_up.HasField("end_time") and calls.get_call(ref) == hung_up


def test_a_blind_transfer_ends_the_call_forwarded(calls, agent):
    ref = answered(calls, agent).ref
    moved = calls.transfer_call(ref, destination="sip:carol@sip.example.com")
    assert moved.status == S.CALL_STATUS_COMPLETED and moved.hangup_cause == H.HANGUP_CAUSE_FORWARDED
    assert moved.participants[-1].number == "sip:carol@sip.example.com"


def test_cancel_a_ringing_call_and_a_queued_call(calls, agent):
    ringing = calls.create_call(source=agent.ref, destination=NO_ANSWER, timeout=60).ref
    wait_for(calls, ringing, S.CALL_STATUS_RINGING)
    queued = calls.create_call(source=agent.ref, destination=STAYS_QUEUED, timeout=60).ref
    assert calls.get_call(queued).status == S.CALL_STATUS_QUEUED
    for ref in (ringing, queued):
        canceled = calls.cancel_call(ref)
        assert canceled.status == S.CALL_STATUS_CANCELED and canceled.hangup_cause == H.HANGUP_CAUSE_CANCEL
        assert not canceled.HasField("answer_time") and canceled.HasField("end_time")


class ControlRpc(NamedTuple):
    """A control RPC (the client's method and its arguments) and the order it gives the network."""

    rpc: str
    fields: dict[str, object]
    order: tuple[str, tuple[object, ...]]  # as SimulatedGateway.orders records it, less the call's ref


PLAYED, SIP_TARGET = "https://cdn.example.com/a.wav", "sip:carol@sip.example.com"
CONTROLS = {
    "hangup": ControlRpc("hangup_call", {}, ("hangup", ())),
    "cancel": ControlRpc("cancel_call", {}, ("cancel", ())),
    "mute": ControlRpc("mute_call", {"mute": True}, ("mute", (True,))),
    "unmute": ControlRpc("mute_call", {"mute": False}, ("mute", (False,))),
    "hold": ControlRpc("hold_call", {"hold": True}, ("hold", (True,))),
    "unhold": ControlRpc("hold_call", {"hold": False}, ("hold", (False,))),
    "record": ControlRpc("record_call", {"start": True}, ("record", (True,))),
    "stop recording": ControlRpc("record_call", {"start": False}, ("record", (False,))),
    "play": ControlRpc("play_audio", {"url": PLAYED}, ("play", (PLAYED,))),
    "transfer": ControlRpc("transfer_call", {"destination": SIP_TARGET}, ("transfer", (SIP_TARGET, False))),
    "attended transfer": ControlRpc("transfer_call", {"destination": "+1 500 555 0001", "attended": True},
                                    ("transfer", (ANSWERS, True))),
    "dtmf": ControlRpc("send_dtmf", {"digits": "0123456789*#ABCD"}, ("send_dtmf", ("0123456789*#ABCD",))),
    "redirect": ControlRpc("redirect_call", {"webhook": "https://hooks.example.com/b"},
                           ("redirect", ("https://hooks.example.com/b",))),
}


def every_control(calls, ref: str):  # type: ignore[no-untyped-def]
    """Each control RPC of CONTROLS on call `ref`, by name."""
    return {name: functools.partial(getattr(calls, c.rpc), ref, **c.fields) for name, c in CONTROLS.items()}


@pytest.mark.parametrize("name", list(CONTROLS))
def test_every_control_gives_the_network_its_order(calls, agent, network, name):
    if name == "cancel":  # CancelCall is for a call not answered yet; the other controls for an answered one
        ref = calls.create_call(source=agent.ref, destination=STAYS_QUEUED, timeout=60).ref
    else:
        ref = answered(calls, agent).ref
    every_control(calls, ref)[name]()
    assert network.orders_of(ref)[1:] == [CONTROLS[name].order]  # after the originate: this order, once
    if calls.get_call(ref).status == S.CALL_STATUS_IN_PROGRESS:
        calls.hangup_call(ref)


def test_a_ringing_call_is_cancelled_not_hung_up_and_only_redirected(calls, agent, network):
    ref = calls.create_call(source=agent.ref, destination=NO_ANSWER, timeout=60).ref
    wait_for(calls, ref, S.CALL_STATUS_RINGING)
    with pytest.raises(FailedPreconditionError, match="RINGING.*CancelCall"):
        calls.hangup_call(ref)
    for name, control in every_control(calls, ref).items():
        if CONTROLS[name].rpc not in ("hangup_call", "cancel_call", "redirect_call"):  # an answered call's only
            with pytest.raises(FailedPreconditionError, match="RINGING"):
                control()
    assert calls.redirect_call(ref, webhook="https://hooks.example.com/b").webhook == "https://hooks.example.com/b"
    calls.cancel_call(ref)
    # After the originate, the network heard of the two controls allowed, and of none refused.
    assert network.orders_of(ref)[1:] == [("redirect", ("https://hooks.example.com/b",)), ("cancel", ())]


def test_an_answered_call_cannot_be_cancelled(calls, agent, network):
    ref = answered(calls, agent).ref
    with pytest.raises(FailedPreconditionError, match="IN_PROGRESS.*HangupCall"):
        calls.cancel_call(ref)
    calls.hangup_call(ref)
    assert network.orders_of(ref)[1:] == [("hangup", ())]  # no cancel


def test_controlling_an_ended_call_is_failed_precondition_naming_its_state(calls, agent, network):
    ref = calls.create_call(source=agent.ref, destination=BUSY).ref
    wait_for(calls, ref, S.CALL_STATUS_BUSY)
    for control in every_control(calls, ref).values():
        with pytest.raises(FailedPreconditionError, match=r"has ended \(BUSY\)"):
            control()
    assert calls.get_call(ref).status == S.CALL_STATUS_BUSY
    assert network.orders_of(ref)[1:] == []  # the originate alone: a refused control tells the network nothing


@pytest.mark.parametrize(
    ("rpc", "fields", "bad"),
    [
        ("play_audio", {"url": "file:///etc/passwd"}, "url"),
        ("play_audio", {"url": ""}, "url"),
        ("send_dtmf", {"digits": ""}, "digits"),
        ("send_dtmf", {"digits": "12E"}, "digits"),
        ("send_dtmf", {"digits": "1" * 65}, "digits"),
        ("transfer_call", {"destination": "nobody"}, "destination"),
        ("redirect_call", {}, "webhook"),
        ("redirect_call", {"webhook": "not a url"}, "webhook"),
    ],
)
def test_control_arguments_are_checked(calls, agent, network, rpc, fields, bad):
    ref = answered(calls, agent).ref
    with pytest.raises(InvalidArgumentError) as raised:
        getattr(calls, rpc)(ref=ref, **fields)
    assert fields_of(raised.value) == {bad}
    calls.hangup_call(ref)
    assert network.orders_of(ref)[1:] == [("hangup", ())]  # nothing for the refused control


def test_list_active_calls_is_the_workspaces_running_calls_oldest_first(tenant, other_tenant, calls, agent):
    running = calls.create_call(source=agent.ref, destination=NO_ANSWER, timeout=60).ref
    ended = calls.create_call(source=agent.ref, destination=FAILS).ref
    answered_ref = calls.create_call(source=agent.ref, destination=ANSWERS).ref
    wait_for(calls, ended, S.CALL_STATUS_FAILED)
    wait_for(calls, answered_ref, S.CALL_STATUS_IN_PROGRESS)
    assert [c.ref for c in calls.list_active_calls().calls] == [running, answered_ref]
    first = calls.list_active_calls(page_size=1)
    assert [c.ref for c in first.calls] == [running] and first.next_page_token
    second = calls.list_active_calls(page_size=1, page_token=first.next_page_token)
    assert [c.ref for c in second.calls] == [answered_ref] and not second.next_page_token
    with other_tenant.calls() as theirs:
        assert list(theirs.list_active_calls().calls) == []
    calls.cancel_call(running)
    calls.hangup_call(answered_ref)
    assert list(calls.list_active_calls().calls) == []


def test_another_workspaces_call_is_not_found_on_every_rpc(other_tenant, calls, agent, network):
    ref = calls.create_call(source=agent.ref, destination=NO_ANSWER, timeout=60).ref
    with other_tenant.calls() as theirs:
        with pytest.raises(NotFoundError):
            theirs.get_call(ref)
        for control in every_control(theirs, ref).values():
            with pytest.raises(NotFoundError):
                control()
    assert calls.cancel_call(ref).status == S.CALL_STATUS_CANCELED
    assert network.orders_of(ref)[1:] == [("cancel", ())]  # the other workspace's controls reached nothing


def test_an_unknown_ref_is_not_found(calls):
    with pytest.raises(NotFoundError, match="no-such-call"):
        calls.get_call("no-such-call")
    with pytest.raises(NotFoundError):
        calls.hangup_call("no-such-call")


# --- restarts ----------------------------------------------------------------------------------------------


def test_calls_left_running_by_a_crash_fail_with_service_restart(tenant, database_url, db):
    def insert(session):  # type: ignore[no-untyped-def]
        workspace_id = session.scalar(select(Workspace.id).where(Workspace.ref == tenant.ref))
        calls = [
            Call(workspace_id=workspace_id, from_party="a", to_party=ANSWERS, status=status,
                 participants=[CallParticipant(number="a", owner=True)])
            for status in ("QUEUED", "RINGING", "IN_PROGRESS")
        ]
        session.add_all(calls)
        session.flush()
        return [c.ref for c in calls]

    refs = db.transaction(insert, write=True)
    restarted = ServerThread(database_url, ["calls"])
    try:
        with Calls(endpoint=restarted.address, api_key=tenant.keys[Role.MEMBER]) as calls:
            for ref in refs:
                call = calls.get_call(ref)
                assert call.status == S.CALL_STATUS_FAILED
                assert call.hangup_cause == H.HANGUP_CAUSE_SERVICE_RESTART
                assert call.HasField("end_time")
            # Served alone, with VOXPLANE_NUMBERS/AGENTS_ENDPOINT unset, Calls asks its own port: no Numbers there.
            with pytest.raises(UnavailableError, match="could not check the call's parties"):
                calls.create_call({"source": "0123456789abcdef", "destination": ANSWERS})
    finally:
        restarted.stop()


def test_another_calls_process_leaves_this_ones_calls_running(database_url, calls, agent):
    call = answered(calls, agent)
    other = ServerThread(database_url, ["calls"])
    other.stop()  # started, and stopped: it ends only the calls it carried (none)
    assert calls.get_call(call.ref).status == S.CALL_STATUS_IN_PROGRESS
    assert calls.hangup_call(call.ref).status == S.CALL_STATUS_COMPLETED


def runner_with_call(db, tenant, runner: str, heartbeat_age: timedelta) -> str:  # type: ignore[no-untyped-def]
    """Records a Calls process that last beat `heartbeat_age` ago, carrying one call in progress; its ref."""
    def insert(session):  # type: ignore[no-untyped-def]
        beat = utcnow() - heartbeat_age
        session.add(CallRunner(id=runner, start_time=beat, heartbeat_time=beat))
        workspace_id = session.scalar(select(Workspace.id).where(Workspace.ref == tenant.ref))
        call = Call(workspace_id=workspace_id, from_party="a", to_party=ANSWERS, status="IN_PROGRESS",
                    runner_id=runner, participants=[CallParticipant(number="a", owner=True)])
        session.add(call)
        session.flush()
        return call.ref

    return db.transaction(insert, write=True)


def test_the_calls_of_a_process_that_stopped_beating_are_ended(tenant, database_url, db, environment):
    crashed = runner_with_call(db, tenant, f"crashed-{secrets.token_hex(4)}", timedelta(hours=1))
    silent_runner = f"silent-{secrets.token_hex(4)}"
    silent = runner_with_call(db, tenant, silent_runner, timedelta(0))
    # A process that still runs (it holds its runner lock) but beats no more: a hung one.
    hung = liveness.RunnerLock(db, silent_runner)
    hung.acquire()
    environment.set(VOXPLANE_CALLS_HEARTBEAT="0.2")  # taken for stopped after 1.2 s without a beat
    watcher = ServerThread(database_url, ["calls"])
    try:
        with Calls(endpoint=watcher.address, api_key=tenant.keys[Role.MEMBER]) as calls:
            ended = calls.get_call(crashed)  # at start: its runner is long silent
            assert (ended.status, ended.hangup_cause) == (S.CALL_STATUS_FAILED, H.HANGUP_CAUSE_SERVICE_RESTART)
            assert calls.get_call(silent).status == S.CALL_STATUS_IN_PROGRESS  # its runner beat just now
            ended = wait_for(calls, silent, S.CALL_STATUS_FAILED, within=5)  # ... and then never again
            assert ended.hangup_cause == H.HANGUP_CAUSE_SERVICE_RESTART
        runners = db.transaction(lambda s: set(s.scalars(select(CallRunner.id))), write=False)
        assert not any(r.startswith(("crashed-", "silent-")) for r in runners)
    finally:
        watcher.stop()
        hung.release()


def test_a_stopping_calls_process_ends_the_calls_it_carried(tenant, database_url, db):
    own = ServerThread(database_url, ["all"])
    try:
        with Calls(endpoint=own.address, api_key=tenant.keys[Role.MEMBER]) as calls:
            call = answered(calls, new_agent(tenant))
    finally:
        own.stop()
    runner = db.transaction(lambda s: s.scalar(select(Call.runner_id).where(Call.ref == call.ref)), write=False)
    with tenant.calls() as calls:
        ended = calls.get_call(call.ref)
    assert (ended.status, ended.hangup_cause) == (S.CALL_STATUS_FAILED, H.HANGUP_CAUSE_SERVICE_RESTART)
    assert db.transaction(lambda s: s.get(CallRunner, runner), write=False) is None


# --- the command line --------------------------------------------------------------------------------------


def test_grpcurl_places_a_call(server, tenant, agent):
    key = tenant.keys[Role.MEMBER]
    created = grpcurl(server.address, "voxplane.calls.v1.Calls/CreateCall", key=key,
                      data={"source": agent.ref, "destination": "+15005550001", "metadata": {"source": "cli"}})
    assert created.returncode == 0, created.stderr
    call = json.loads(created.stdout)
    assert call["status"] == "CALL_STATUS_QUEUED" and call["destination"] == ANSWERS
    with tenant.calls() as calls:
        wait_for(calls, call["ref"], S.CALL_STATUS_IN_PROGRESS)
    hung_up = grpcurl(server.address, "voxplane.calls.v1.Calls/HangupCall", key=key, data={"ref": call["ref"]})
    assert hung_up.returncode == 0, hung_up.stderr
    assert json.loads(hung_up.stdout)["status"] == "CALL_STATUS_COMPLETED"


# --- storing what the network reports ---------------------------------------------------------------------


def stored_calls(db, tenant, count: int, runner: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Refs of `count` QUEUED calls of the tenant, stored as CreateCall stores them (no network behind them)."""
    workspace = db.transaction(lambda s: s.scalars(select(Workspace).where(Workspace.ref == tenant.ref)).one(),
                               write=False)
    caller = Caller(key_id="test", role=Role.MEMBER, workspace_id=workspace.id, workspace_ref=workspace.ref)
    new = live.checked_new_call(source="+14155550100", destination=ANSWERS, caller_id="", device_id="a1",
                                webhook="", timeout=None, metadata={}, request_id="")
    return [db.transaction(lambda s: live.insert_call(s, caller, new, "", runner), write=True).ref
            for _ in range(count)]


def test_network_events_apply_in_order_and_a_refused_one_changes_nothing(tenant, db, calls, calls_runner):
    answered_ref, ended_ref = stored_calls(db, tenant, 2, calls_runner)
    outcomes = db.transaction(lambda s: live.apply_events(s, [
        NetworkEvent(answered_ref, E.RING),
        NetworkEvent(answered_ref, E.ANSWER),
        NetworkEvent(ended_ref, E.END, "BUSY"),
        NetworkEvent(ended_ref, E.ANSWER),  # after BUSY: refused
        NetworkEvent("no-such-call", E.RING),  # a call deleted meanwhile: nothing to do
    ]), write=True)
    assert [type(o).__name__ if o else None for o in outcomes] == [None, None, None, "TransitionRefused", None]
    answered, ended = calls.get_call(answered_ref), calls.get_call(ended_ref)
    assert answered.status == S.CALL_STATUS_IN_PROGRESS and answered.HasField("answer_time")
    assert not answered.HasField("end_time") and answered.hangup_cause == H.HANGUP_CAUSE_UNSPECIFIED
    assert ended.status == S.CALL_STATUS_BUSY and ended.hangup_cause == H.HANGUP_CAUSE_BUSY
    assert ended.HasField("end_time") and not ended.HasField("answer_time")
    query = select(Call.ref, Call.version).where(Call.ref.in_([answered_ref, ended_ref]))
    versions = db.transaction(lambda s: dict(s.execute(query).all()), write=False)
    assert versions == {answered_ref: 3, ended_ref: 2}  # every change stored is a new version


def test_events_reported_together_are_stored_together(tenant, db, calls, monkeypatch, calls_runner):
    refs = stored_calls(db, tenant, 40, calls_runner)
    transactions = []
    run_transaction = db.run_transaction

    async def counted(fn, *, write):  # type: ignore[no-untyped-def]
        transactions.append(write)
        return await run_transaction(fn, write=write)

    monkeypatch.setattr(db, "run_transaction", counted)
    recorder = EventRecorder(db)

    async def report() -> list[object]:
        events = [NetworkEvent(ref, E.RING) for ref in refs] + [NetworkEvent(refs[0], E.RING)]
        outcomes = await asyncio.gather(*(recorder.record(e) for e in events), return_exceptions=True)
        await recorder.close()
        return outcomes

    outcomes = asyncio.run(report())
    assert outcomes[:-1] == [None] * 40
    assert isinstance(outcomes[-1], states.TransitionRefused)  # ringing already: refused, to its reporter alone
    assert 1 <= len(transactions) <= 3  # one for the first event, then the rest together
    assert {calls.get_call(ref).status for ref in refs} == {S.CALL_STATUS_RINGING}


# --- the state machine alone -------------------------------------------------------------------------------

E = states.Event
ALLOWED = [
    ("QUEUED", E.RING, None, "RINGING"),
    ("QUEUED", E.ANSWER, None, "IN_PROGRESS"),
    ("RINGING", E.ANSWER, None, "IN_PROGRESS"),
    *[(s, E.END, c, r) for s in ("QUEUED", "RINGING") for c, r in [
        ("BUSY", "BUSY"), ("NO_ANSWER", "NO_ANSWER"), ("CANCEL", "CANCELED"), ("CONGESTION", "FAILED"),
        ("NOT_FOUND", "FAILED"), ("SERVICE_RESTART", "FAILED"),
    ]],
    ("IN_PROGRESS", E.END, "NORMAL_CLEARING", "COMPLETED"),
    ("IN_PROGRESS", E.END, "FORWARDED", "COMPLETED"),
    ("IN_PROGRESS", E.END, "SERVICE_RESTART", "FAILED"),
]


@pytest.mark.parametrize(("status", "event", "cause", "to"), ALLOWED)
def test_state_machine_allowed_transitions(status, event, cause, to):
    step = states.transition(status, event, cause)
    assert step.status == to
    assert step.hangup_cause == cause
    assert step.answered == (event is E.ANSWER)
    assert step.ended == (event is E.END)


def _refused() -> list[tuple[str, states.Event, str | None]]:
    allowed = {(s, e, c) for s, e, c, _ in ALLOWED}
    causes = sorted(states.CAUSES) + ["NONSENSE", None]
    every = [(s, e, None) for s in states.ACTIVE | states.FINAL for e in (E.RING, E.ANSWER)]
    every += [(s, E.END, c) for s in states.ACTIVE | states.FINAL for c in causes]
    return sorted((t for t in every if t not in allowed), key=str)


@pytest.mark.parametrize(("status", "event", "cause"), _refused())
def test_state_machine_refuses_every_other_event(status, event, cause):
    with pytest.raises(states.TransitionRefused):
        states.transition(status, event, cause)


@pytest.mark.parametrize("control", list(states.Control))
def test_state_machine_controls(control):
    for status in sorted(states.ACTIVE | states.FINAL):
        if status in control.allowed:
            states.check_control(status, control, "c1")
        else:
            with pytest.raises(states.TransitionRefused, match=status):
                states.check_control(status, control, "c1")
    assert not control.allowed & states.FINAL


# --- the clients Calls uses to ask Numbers and Agents -------------------------------------------------------


def test_with_api_key_shares_the_channel_and_caps_the_deadline(tenant, other_tenant, fresh_e164):
    number = new_number(tenant, fresh_e164())
    with Numbers(endpoint=tenant.address, timeout=10) as shared:
        mine = shared.with_api_key(tenant.keys[Role.MEMBER], timeout=2.5)
        theirs = shared.with_api_key(other_tenant.keys[Role.MEMBER])
        assert [n.e164_number for n in mine.list_numbers(filter={"e164_prefix": number}).numbers] == [number]
        assert list(theirs.list_numbers(filter={"e164_prefix": number}).numbers) == []
        assert mine._channel is shared._channel is theirs._channel
        assert (mine.options.timeout, theirs.options.timeout) == (2.5, 10)
        mine.close()  # leaves the shared channel open
        assert len(theirs.list_numbers(filter={"e164_prefix": number}).numbers) == 0
