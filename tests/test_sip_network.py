"""The real voice network end to end, on loopback: Kamailio and rtpengine (`voxplane edge run`) in front of a
Calls server whose SIP gateway takes every call for a voxplane number, with sipp as the phones and the
carrier. Skipped without the Debian packages, unless CI=true."""

from __future__ import annotations

import concurrent.futures
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from voxplane.calls.v1 import calls_pb2 as pb
from voxplane.services.calls.sip import A_TAG, B_TAG
from voxplane.services.core import config

from .conftest import ServerThread
from .sip_peers import Phone, free_udp_port, packets_from, require
from .test_call_events import events_of, types
from .test_calls import wait_for
from .test_edge import RunningEdge, require_edge_packages, running_edge, sipp_call, sipp_register
from .webhook_receiver import Receiver, Reply

S, H, T, D = pb.CallStatus, pb.HangupCause, pb.CallEventType, pb.Direction


class Network:
    """The edge, the Calls server behind it, and the port the carrier's sipp listens on."""

    def __init__(self, edge: RunningEdge, server: ServerThread, carrier_port: int, workdir: Path):
        self.edge, self.server, self.carrier_port, self.workdir = edge, server, carrier_port, workdir

    def phone(self, scenario: str, port: int | None = None) -> Phone:
        phone = Phone(scenario, self.workdir, f"{scenario}-{secrets.token_hex(3)}", port)
        time.sleep(0.3)  # sipp binds its socket
        return phone


@pytest.fixture(scope="module")
def network(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    require_edge_packages()
    require("rtpengine", "sipp")
    workdir = tmp_path_factory.mktemp("network")
    # Every phone is 127.0.0.1: pike would take quick tests for a flood.
    with running_edge(database_url, workdir, flood_requests="10000") as edge, pytest.MonkeyPatch.context() as env:
        carrier_port = free_udp_port()
        for name, value in {
            "VOXPLANE_CALL_GATEWAY": "sip", "VOXPLANE_SIP_PORT": str(edge.gateway_port),
            "VOXPLANE_SIP_PROXY": f"127.0.0.1:{edge.port}", "VOXPLANE_SIP_TRUNK": f"sip:127.0.0.1:{carrier_port}",
            "VOXPLANE_RTPENGINE_NG": edge.rtpengine_ng,
        }.items():
            env.setenv(name, value)
        config.reload()
        server = ServerThread(database_url, ["all"])
        try:
            yield Network(edge, server, carrier_port, workdir)
        finally:
            server.stop()
    config.reload()


@pytest.fixture(scope="module")
def server(network: Network) -> ServerThread:
    """The tenants of these tests live on the Calls server behind the edge."""
    return network.server


def registered_agent(network: Network, tenant, tmp_path: Path, scenario: str = "proxied_agent"):  # type: ignore[no-untyped-def]
    """An agent whose sipp phone registered at the edge and now waits for one call; (agent, phone)."""
    secret, username = "Secret-" + secrets.token_hex(8), f"a{secrets.token_hex(4)}"
    with tenant.agents() as agents:
        agent = agents.create_agent(username=username, secret=secret, domains=[network.edge.domain])
    port = free_udp_port()
    assert sipp_register(network.edge, tmp_path, username, secret, port=port) == [401, 200]
    return agent, network.phone(scenario, port)


def calling_agent(network: Network, tenant) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Makes an agent of the tenant (in the edge's domain) whose phone places calls; its username and secret."""
    username, secret = f"c{secrets.token_hex(4)}", "Secret-" + secrets.token_hex(8)
    with tenant.agents() as agents:
        agents.create_agent(username=username, secret=secret, domains=[network.edge.domain])
    return username, secret


def watched(calls):  # type: ignore[no-untyped-def]
    """The cursor of the workspace's event stream now: what happens later is read from it."""
    opened = calls.watch_call_events(heartbeat_interval=1)
    cursor = next(opened).cursor
    opened.cancel()
    return cursor


def events_after(calls, cursor: str) -> list[pb.CallEvent]:  # type: ignore[no-untyped-def]
    with calls.watch_call_events(cursor=cursor, heartbeat_interval=1) as stream:
        return events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)


def requests(phone: Phone) -> list[str]:
    """The SIP requests the phone got or sent, by method, in order."""
    return re.findall(r"^(INVITE|ACK|BYE|CANCEL) sip:", phone.seen(), re.MULTILINE)


def test_a_call_to_a_number_rings_its_agent_through_the_gateway_until_the_number_is_released(
    network, tenant, tmp_path, fresh_e164
):  # type: ignore[no-untyped-def]
    agent, phone = registered_agent(network, tenant, tmp_path)
    (caller, secret), e164 = calling_agent(network, tenant), fresh_e164()
    with tenant.numbers() as numbers, tenant.calls() as calls:
        number = numbers.create_number(e164_number=e164, provider_ref="trunk-1",
                                       aor_link=f"sip:{agent.username}@{network.edge.domain}")
        cursor = watched(calls)
        # An agent's call to the number: authenticated by the edge, then Calls routes it to the AOR.
        assert sipp_call(network.edge, tmp_path, caller, e164, secret=secret, scenario="caller") == [407, 180, 200]
        assert phone.wait() == 0
        found = events_after(calls, cursor)
        assert types(found) == ["NEW_CALL", "RINGING", "ANSWER", "HANGUP"]
        call = calls.get_call(found[0].call_ref)
        assert (call.direction, call.source, call.destination) == (
            D.DIRECTION_INBOUND, f"sip:{caller}@{network.edge.domain}", e164)
        assert (call.status, call.hangup_cause) == (S.CALL_STATUS_COMPLETED, H.HANGUP_CAUSE_NORMAL_CLEARING)
        numbers.release_number(number.ref)
        # The carrier's call to it now gets 404 (an agent's would go out through the trunk: no longer ours).
        assert sipp_call(network.edge, tmp_path, "carrier", e164, port=network.edge.trunk_port,
                         scenario="caller") == [404]
    # The agent's phone got the call from the edge (record-routed), and the BYE through it too.
    assert requests(phone) == ["INVITE", "ACK", "BYE"]
    assert "Record-Route: <sip:127.0.0.1" in phone.seen()


def test_a_call_from_the_trunk_reaches_the_agent_its_media_flows_and_each_control_acts_on_the_wire(
    network, tenant, tmp_path, fresh_e164
):  # type: ignore[no-untyped-def]
    agent, phone = registered_agent(network, tenant, tmp_path)
    e164, ng_port = fresh_e164(), int(network.edge.rtpengine_ng.rpartition(":")[2])
    with tenant.numbers() as numbers, tenant.calls() as calls:
        numbers.create_number(e164_number=e164, provider_ref="trunk-1",
                              aor_link=f"sip:{agent.username}@{network.edge.domain}")
        cursor = watched(calls)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            dialled = pool.submit(sipp_call, network.edge, tmp_path, "carrier", e164, port=network.edge.trunk_port,
                                  scenario="caller")
            with calls.watch_call_events(cursor=cursor, heartbeat_interval=1) as stream:
                answered = events_of(stream, until=T.CALL_EVENT_TYPE_ANSWER)
                assert types(answered) == ["NEW_CALL", "RINGING", "ANSWER"]
                ref = answered[0].call_ref
                time.sleep(1)  # the caller's ACK is through (sipp takes a BYE before it for an unexpected one)
                first = packets_from(ng_port, ref)
                time.sleep(0.5)
                later = packets_from(ng_port, ref)
                # rtpengine relays both parties' audio: the agent's (A) and the caller's (B), and it keeps coming.
                assert first[A_TAG] > 10 and first[B_TAG] > 10, first
                assert later[A_TAG] > first[A_TAG] and later[B_TAG] > first[B_TAG], (first, later)
                calls.hold_call(ref, hold=True)
                calls.hold_call(ref, hold=False)
                calls.mute_call(ref, mute=True)
                calls.send_dtmf(ref, digits="5")
                ended = calls.hangup_call(ref)
                assert types(events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)) == [
                    "HELD", "RESUMED", "MUTED", "HANGUP"]
            assert dialled.result() == [180, 200]
            caller = sorted(tmp_path.glob("call-*.log"))[-1].read_text()
    assert (ended.direction, ended.status, ended.hangup_cause) == (
        D.DIRECTION_INBOUND, S.CALL_STATUS_COMPLETED, H.HANGUP_CAUSE_NORMAL_CLEARING)
    assert ended.source == f"sip:carrier@{network.edge.domain}"
    # Hold and resume are re-INVITEs to the caller (through the edge: its Record-Route), sendonly then sendrecv.
    reinvites = caller.split("INVITE sip:")[2:]
    assert len(reinvites) == 2 and "a=sendonly" in reinvites[0] and "a=sendrecv" in reinvites[1], caller
    # HangupCall: BYE on both legs (to the caller's Contact: not its own BYE, which would go to ours).
    assert phone.wait() == 0 and requests(phone) == ["INVITE", "ACK", "BYE"]
    assert f"BYE sip:carrier@127.0.0.1:{network.edge.trunk_port} " in caller


def test_a_caller_that_gives_up_cancels_the_ringing_agent(network, tenant, tmp_path, fresh_e164):  # type: ignore[no-untyped-def]
    agent, phone = registered_agent(network, tenant, tmp_path, scenario="rings")
    e164 = fresh_e164()
    with tenant.numbers() as numbers, tenant.calls() as calls:
        numbers.create_number(e164_number=e164, provider_ref="trunk-1",
                              aor_link=f"sip:{agent.username}@{network.edge.domain}")
        cursor = watched(calls)
        assert sipp_call(network.edge, tmp_path, "carrier", e164, port=network.edge.trunk_port,
                         scenario="caller_cancels") == [180, 200, 487]
        found = events_after(calls, cursor)
    assert types(found) == ["NEW_CALL", "RINGING", "HANGUP"]
    assert (found[-1].status, found[-1].hangup_cause) == (S.CALL_STATUS_CANCELED, H.HANGUP_CAUSE_CANCEL)
    assert phone.wait() == 0 and requests(phone) == ["INVITE", "CANCEL", "ACK"]


def test_a_number_whose_agent_is_not_registered_gets_480(network, tenant, tmp_path, fresh_e164):  # type: ignore[no-untyped-def]
    e164 = fresh_e164()
    with tenant.agents() as agents:
        agent = agents.create_agent(username=f"a{secrets.token_hex(4)}", secret="Secret-" + secrets.token_hex(8),
                                    domains=[network.edge.domain])
    with tenant.numbers() as numbers, tenant.calls() as calls:
        numbers.create_number(e164_number=e164, provider_ref="trunk-1",
                              aor_link=f"sip:{agent.username}@{network.edge.domain}")
        cursor = watched(calls)
        assert sipp_call(network.edge, tmp_path, "carrier", e164, port=network.edge.trunk_port,
                         scenario="caller") == [480]
        found = events_after(calls, cursor)
    assert types(found) == ["NEW_CALL", "HANGUP"]
    assert (found[-1].status, found[-1].hangup_cause) == (S.CALL_STATUS_NO_ANSWER, H.HANGUP_CAUSE_NO_ANSWER)


def test_a_call_to_an_outside_number_goes_out_through_the_trunk(network, tenant, tmp_path):  # type: ignore[no-untyped-def]
    agent, phone = registered_agent(network, tenant, tmp_path)
    carrier = network.phone("answer", network.carrier_port)
    with tenant.calls() as calls:
        call, stream = calls.create_call(source=agent.ref, destination="+442079460123", track=True, timeout=10)
        with stream:
            assert types(events_of(stream, until=T.CALL_EVENT_TYPE_ANSWER)) == ["NEW_CALL", "RINGING", "ANSWER"]
            calls.hangup_call(call.ref)
        wait_for(calls, call.ref, S.CALL_STATUS_COMPLETED)
    assert phone.wait() == 0 and carrier.wait() == 0
    assert requests(phone) == ["INVITE", "ACK", "BYE"]  # the agent's leg through the edge
    assert "INVITE sip:+442079460123@127.0.0.1" in carrier.seen()  # the far leg to the carrier trunk


def test_an_agents_phone_calls_an_outside_number_through_the_trunk_as_an_outbound_call(network, tenant, tmp_path):  # type: ignore[no-untyped-def]
    carrier = network.phone("answer", network.carrier_port)
    (caller, secret), ng_port = calling_agent(network, tenant), int(network.edge.rtpengine_ng.rpartition(":")[2])
    with tenant.calls() as calls, tenant.agents() as agents:
        cursor = watched(calls)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            dialled = pool.submit(sipp_call, network.edge, tmp_path, caller, "+442079460123", secret=secret,
                                  scenario="caller")
            with calls.watch_call_events(cursor=cursor, heartbeat_interval=1) as stream:
                answered = events_of(stream, until=T.CALL_EVENT_TYPE_ANSWER)
                assert types(answered) == ["NEW_CALL", "RINGING", "ANSWER"]
                ref = answered[0].call_ref
                time.sleep(1)
                media = packets_from(ng_port, ref)
                assert media[A_TAG] > 10 and media[B_TAG] > 10, media  # the carrier's and the phone's, relayed
                calls.mute_call(ref, mute=True)  # the agent's phone's audio, the caller here
                calls.hold_call(ref, hold=True)  # a re-INVITE to the carrier, the far party here
                assert types(events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)) == ["MUTED", "HELD", "HANGUP"]
            assert dialled.result() == [407, 180, 200]
        call = calls.get_call(ref)
        agent = next(a for a in agents.list_agents().agents if a.username == caller)
    assert (call.direction, call.source, call.destination) == (D.DIRECTION_OUTBOUND, agent.ref, "+442079460123")
    assert (call.status, call.hangup_cause) == (S.CALL_STATUS_COMPLETED, H.HANGUP_CAUSE_NORMAL_CLEARING)
    assert carrier.wait() == 0 and requests(carrier) == ["INVITE", "ACK", "INVITE", "ACK", "BYE"]
    assert "INVITE sip:+442079460123@127.0.0.1" in carrier.seen()  # out through the trunk
    assert "a=sendonly" in carrier.seen().split("INVITE sip:")[2]
    assert f"[{ref}]: [core] Silencing directional media (tag '{B_TAG}')" in network.edge.log.read_text(errors="replace")


def test_an_agents_phone_call_to_a_premium_number_is_refused_403_naming_the_rule(network, tenant, tmp_path):  # type: ignore[no-untyped-def]
    caller, secret = calling_agent(network, tenant)
    with tenant.calls() as calls:
        assert sipp_call(network.edge, tmp_path, caller, "+19005550123", secret=secret, scenario="caller") == [407, 403]
        assert not calls.list_calls().calls  # refused before it was stored, as CreateCall's would be
    trace = next(tmp_path.glob("call-*.log")).read_text()
    assert 'Warning: 399 voxplane "destination +19005550123 is a premium-rate number' in trace


def test_a_number_forwarded_to_a_sip_uri_rings_it_through_the_edge(network, tenant, tmp_path, fresh_e164):  # type: ignore[no-untyped-def]
    e164, desk = fresh_e164(), network.phone("proxied_agent")
    with tenant.numbers() as numbers, tenant.calls() as calls:
        numbers.create_number(e164_number=e164, provider_ref="trunk-1", forward_sip_to=f"sip:desk@{desk.address}")
        cursor = watched(calls)
        assert sipp_call(network.edge, tmp_path, "carrier", e164, port=network.edge.trunk_port,
                         scenario="caller") == [180, 200]
        assert types(events_after(calls, cursor)) == ["NEW_CALL", "RINGING", "ANSWER", "HANGUP"]
    assert desk.wait() == 0 and requests(desk) == ["INVITE", "ACK", "BYE"]
    assert "Record-Route: <sip:127.0.0.1" in desk.seen()  # sent on by the edge, as addressed


def test_a_suspended_numbers_call_gets_404_and_stays_in_its_history(network, tenant, tmp_path, fresh_e164):  # type: ignore[no-untyped-def]
    e164, (caller, secret) = fresh_e164(), calling_agent(network, tenant)
    with tenant.numbers() as numbers, tenant.calls() as calls:
        number = numbers.create_number(e164_number=e164, provider_ref="trunk-1", forward_sip_to="sip:desk@127.0.0.1")
        numbers.suspend_number(number.ref)
        cursor = watched(calls)
        assert sipp_call(network.edge, tmp_path, caller, e164, secret=secret, scenario="caller") == [407, 404]
        found = events_after(calls, cursor)
    assert types(found) == ["NEW_CALL", "HANGUP"]
    assert (found[-1].status, found[-1].hangup_cause) == (S.CALL_STATUS_FAILED, H.HANGUP_CAUSE_NOT_FOUND)


@pytest.mark.usefixtures("webhooks")
def test_a_webhooks_dial_rings_its_targets_at_once_and_bridges_the_first_to_answer(
    network, tenant, tmp_path, fresh_e164
):  # type: ignore[no-untyped-def]
    agent, phone = registered_agent(network, tenant, tmp_path)
    domain, e164 = network.edge.domain, fresh_e164()
    # Two targets: one nobody registered as (the edge answers 480), and the agent, who answers.
    dial = Reply(json.dumps({"action": "dial", "targets": [f"sip:nobody@{domain}", f"sip:{agent.username}@{domain}"]}))
    receiver = Receiver(by_type={"call.new_call": dial})
    try:
        with tenant.numbers() as numbers, tenant.calls() as calls:
            numbers.create_number(e164_number=e164, provider_ref="trunk-1", ingress_info={"webhook": receiver.url()})
            cursor = watched(calls)
            assert sipp_call(network.edge, tmp_path, "carrier", e164, port=network.edge.trunk_port,
                             scenario="caller") == [180, 200]
            found = events_after(calls, cursor)
    finally:
        receiver.close()
    assert types(found) == ["NEW_CALL", "RINGING", "ANSWER", "HANGUP"]
    assert found[-1].hangup_cause == H.HANGUP_CAUSE_NORMAL_CLEARING
    assert phone.wait() == 0 and requests(phone) == ["INVITE", "ACK", "BYE"]
