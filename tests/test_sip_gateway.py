"""The SIP gateway placing real calls on loopback: a Calls server with VOXPLANE_CALL_GATEWAY=sip, a real
rtpengine anchoring the media, and sipp phones: A (the agent's device, behind the "proxy") and B (the
destination, behind the "trunk"). Skipped without rtpengine and sipp, unless CI=true."""

from __future__ import annotations

import io
import secrets
import struct
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from voxplane import (
    Agents,
    Calls,
    FailedPreconditionError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
    VoxplaneError,
)
from voxplane.calls.v1 import calls_pb2 as pb
from voxplane.services.calls.audio import DECODE, PCMA
from voxplane.services.calls.models import SipDialog
from voxplane.services.calls.rtpengine import NgError
from voxplane.services.calls.sip import A_TAG, B_TAG, cause_for, with_direction
from voxplane.services.core import config, workspaces
from voxplane.services.core.auth import Role
from voxplane.services.persistence.db import Database

from .conftest import ServerThread, Tenant, backends
from .sip_peers import Phone, Rtpengine, capture, free_udp_port, ng, packets_from, require
from .test_call_events import events_of, types
from .test_calls import wait_for
from .test_runner_crash import Serving, own_database
from .webhook_receiver import Receiver, Reply

S, H, T = pb.CallStatus, pb.HangupCause, pb.CallEventType


def test_sip_final_responses_map_to_the_hangup_causes():
    assert {code: cause_for(code) for code in (486, 600, 404, 484, 604, 410, 408, 480, 302, 503, 403)} == {
        486: "BUSY", 600: "BUSY", 404: "NOT_FOUND", 484: "NOT_FOUND", 604: "NOT_FOUND", 410: "NOT_FOUND",
        408: "NO_ANSWER", 480: "NO_ANSWER", 302: "CONGESTION", 503: "CONGESTION", 403: "CONGESTION",
    }


def test_hold_changes_the_direction_and_the_version():
    sdp = "v=0\r\no=- 7 3 IN IP4 127.0.0.1\r\ns=-\r\nm=audio 1 RTP/AVP 8\r\na=sendrecv\r\n"
    held = with_direction(sdp, "sendonly")
    assert "o=- 7 4 IN" in held and held.endswith("a=sendonly\r\n") and "sendrecv" not in held


class SipNetwork:
    """The peers of one test module: rtpengine, the ports the phones take, and the SIP Calls server."""

    def __init__(self, workdir: Path, database_url: str, rtpengine: Rtpengine, a_port: int, b_port: int):
        self.workdir, self.database_url, self.rtpengine = workdir, database_url, rtpengine
        self.server = ServerThread(database_url, ["all"])
        self.a_port, self.b_port = a_port, b_port
        self.phones: list[Phone] = []

    def restart(self) -> None:
        """Stops the Calls server (its gateway ends the calls it carries) and starts another like it."""
        self.server.stop()
        self.server = ServerThread(self.database_url, ["all"])

    def phones_for(self, a: str, b: str | None) -> tuple[Phone, Phone | None]:
        """Starts phone A (scenario `a`) and, unless None, phone B, on the ports the gateway sends to."""
        name = secrets.token_hex(3)
        started = [Phone(a, self.workdir, f"{name}-A", self.a_port)]
        if b is not None:
            started.append(Phone(b, self.workdir, f"{name}-B", self.b_port))
        self.phones += started
        time.sleep(0.3)  # sipp binds its socket
        return started[0], started[1] if b is not None else None

    def ng(self, command: str, **arguments: Any) -> dict[str, Any]:
        return ng(self.rtpengine.ng_port, command, **arguments)

    def packets_from(self, call_ref: str) -> dict[str, int]:
        return packets_from(self.rtpengine.ng_port, call_ref)


@pytest.fixture(scope="module")
def sip(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SipNetwork]:
    require("rtpengine", "sipp")
    workdir = tmp_path_factory.mktemp("sip")
    rtpengine = Rtpengine(workdir)
    a_port, b_port = free_udp_port(), free_udp_port()
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "VOXPLANE_CALL_GATEWAY": "sip", "VOXPLANE_SIP_PORT": str(free_udp_port()),
            "VOXPLANE_SIP_PROXY": f"127.0.0.1:{a_port}", "VOXPLANE_SIP_TRUNK": f"127.0.0.1:{b_port}",
            "VOXPLANE_RTPENGINE_NG": f"127.0.0.1:{rtpengine.ng_port}",
            "VOXPLANE_RTPENGINE_RECORDINGS": str(rtpengine.recordings),
            "VOXPLANE_WEBHOOK_ALLOW": "127.0.0.1/32",  # the announcements' server below; not 127.0.0.2
        }.items():
            env.setenv(name, value)
        config.reload()
        network = SipNetwork(workdir, database_url, rtpengine, a_port, b_port)
        try:
            yield network
        finally:
            network.server.stop()
            for phone in network.phones:
                phone.stop()
            rtpengine.stop()
    config.reload()


@pytest.fixture
def tenant(sip: SipNetwork, db) -> Tenant:  # type: ignore[no-untyped-def]
    def setup(session):  # type: ignore[no-untyped-def]
        ws = workspaces.create_workspace(session, f"ws-{secrets.token_hex(6)}")
        return Tenant(ws.name, ws.ref, sip.server.address, {r: workspaces.create_key(session, ws, r) for r in Role})

    return db.transaction(setup, write=True)


@pytest.fixture
def calls(tenant: Tenant):  # type: ignore[no-untyped-def]
    with tenant.calls() as client:
        yield client


@pytest.fixture
def agent(tenant: Tenant):  # type: ignore[no-untyped-def]
    with tenant.agents() as agents:
        return agents.create_agent(name="Agent", username=f"a{secrets.token_hex(4)}",
                                   secret=f"Secret-{secrets.token_hex(8)}", domains=["sip.test"])


def place(calls, agent, to: str, timeout: int = 10):  # type: ignore[no-untyped-def]
    return calls.create_call(source=agent.ref, destination=to, track=True, timeout=timeout)


def test_an_answered_call_bridges_media_both_ways_and_each_control_acts_on_the_wire(
    sip, calls, agent, fresh_e164
):  # type: ignore[no-untyped-def]
    a, b = sip.phones_for("answer", "answer")
    assert b is not None
    wire = capture({a.media_port, b.media_port})
    try:
        call, stream = place(calls, agent, fresh_e164())
        with stream:
            assert types(events_of(stream, until=T.CALL_EVENT_TYPE_ANSWER)) == ["NEW_CALL", "RINGING", "ANSWER"]
            answered_at = time.monotonic()
            time.sleep(1)
            first = sip.packets_from(call.ref)
            time.sleep(0.5)
            later = sip.packets_from(call.ref)
            # rtpengine receives media from both phones, and it keeps coming.
            assert first[A_TAG] > 10 and first[B_TAG] > 10, first
            assert later[A_TAG] > first[A_TAG] and later[B_TAG] > first[B_TAG], (first, later)

            muted_at = time.monotonic()
            calls.mute_call(call.ref, mute=True)
            time.sleep(0.5)
            unmuted_at = time.monotonic()
            calls.mute_call(call.ref, mute=False)
            calls.hold_call(call.ref, hold=True)
            calls.hold_call(call.ref, hold=False)
            dtmf_at = time.monotonic()
            calls.send_dtmf(call.ref, digits="58#")
            time.sleep(1)
            dtmf_done = time.monotonic()
            ended = calls.hangup_call(call.ref)
            assert types(events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)) == [
                "MUTED", "UNMUTED", "HELD", "RESUMED", "HANGUP"]
    finally:
        if wire is not None:
            wire.stop()
    assert (ended.status, ended.hangup_cause) == (S.CALL_STATUS_COMPLETED, H.HANGUP_CAUSE_NORMAL_CLEARING)
    rtpengine_log = sip.rtpengine.log.read_text()
    assert "Silencing directional media (tag 'leg-a')" in rtpengine_log
    assert "Unsilencing directional media (tag 'leg-a')" in rtpengine_log
    # Hold and resume: two re-INVITEs to B, sendonly then sendrecv.
    reinvites = b.seen().split("INVITE sip:")[2:]
    assert len(reinvites) == 2 and "a=sendonly" in reinvites[0] and "a=sendrecv" in reinvites[1], b.seen()
    assert a.wait() == 0 and b.wait() == 0  # both phones got their BYE, and answered it
    with pytest.raises(NgError, match="refused 'query'"):
        sip.ng("query", call_id=call.ref)  # the media was released
    if wire is None:
        return  # no packet socket here: what reached the phones cannot be seen
    # On the wire: rtpengine relays each phone's audio to the other (PCMA, payload type 8), once bridged
    # (before, A heard ringback).
    to_a = wire.between(a.media_port, answered_at + 0.2, muted_at)
    to_b = wire.between(b.media_port, answered_at + 0.2, muted_at)
    assert sum(p[2] == 8 for p in to_a) > 20 and sum(p[2] == 8 for p in to_b) > 20, (len(to_a), len(to_b))
    # Muted, B hears silence from A (the packets keep flowing); before, it heard sound.
    while_muted = wire.between(b.media_port, muted_at + 0.1, unmuted_at)
    assert while_muted and all(p[3] for p in while_muted if p[2] == 8)
    assert not all(p[3] for p in to_b)
    # The digits reached B as RFC 4733 telephone-events (payload type 101; events 5, 8 and 11 for #).
    events = {p[4] for p in wire.between(b.media_port, dtmf_at, dtmf_done) if p[2] == 101}
    assert events == {5, 8, 11}, events
    assert not any(p[2] == 101 for p in wire.between(b.media_port, 0, dtmf_at))


@pytest.mark.parametrize(("a_scenario", "b_scenario", "status", "cause", "expected"), [
    ("answer", "busy", S.CALL_STATUS_BUSY, H.HANGUP_CAUSE_BUSY, ["NEW_CALL", "RINGING", "HANGUP"]),
    ("answer", "rings", S.CALL_STATUS_NO_ANSWER, H.HANGUP_CAUSE_NO_ANSWER, ["NEW_CALL", "RINGING", "HANGUP"]),
    ("answer", "answer-hangs-up", S.CALL_STATUS_COMPLETED, H.HANGUP_CAUSE_NORMAL_CLEARING,
     ["NEW_CALL", "RINGING", "ANSWER", "HANGUP"]),
])
def test_the_destination_ends_the_call_with_its_cause(
    sip, calls, agent, fresh_e164, a_scenario, b_scenario, status, cause, expected
):  # type: ignore[no-untyped-def]
    a, b = sip.phones_for(a_scenario, b_scenario)
    call, stream = place(calls, agent, fresh_e164(), timeout=2)
    with stream:
        found = events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)
    assert types(found) == expected
    assert (found[-1].status, found[-1].hangup_cause) == (status, cause)
    assert a.wait() == 0 and b.wait() == 0  # A got its BYE; B its ACK, CANCEL or BYE's answer
    if b_scenario == "rings":
        assert "CANCEL sip:" in b.seen()
    answered = wait_for(calls, call.ref, status)
    assert answered.HasField("end_time")


def redirecting_carrier(sip: SipNetwork, to: str, calls: int) -> Phone:
    """Phone B as a carrier that answers 302 (Contact: `to`), and answers the INVITE to `to` if `calls` is 2."""
    phone = Phone("redirects", sip.workdir, f"{secrets.token_hex(3)}-B", sip.b_port, calls=calls,
                  keys={"target": to.removeprefix("+")})
    sip.phones.append(phone)
    time.sleep(0.3)  # sipp binds its socket
    return phone


def test_a_redirect_is_followed_to_the_number_of_its_contact(sip, calls, agent, fresh_e164):  # type: ignore[no-untyped-def]
    destination, forwarded_to = fresh_e164(), fresh_e164()
    a, _ = sip.phones_for("answer", None)
    b = redirecting_carrier(sip, forwarded_to, calls=2)
    call, stream = place(calls, agent, destination)
    with stream:
        assert types(events_of(stream, until=T.CALL_EVENT_TYPE_ANSWER)) == ["NEW_CALL", "RINGING", "ANSWER"]
        calls.hangup_call(call.ref)
        (hangup,) = events_of(stream, count=1)
    assert (hangup.status, hangup.hangup_cause) == (S.CALL_STATUS_COMPLETED, H.HANGUP_CAUSE_NORMAL_CLEARING)
    assert a.wait() == 0 and b.wait() == 0  # B: the 302 ACKed, then the redirected call answered and hung up
    invites = [line for line in b.seen().splitlines() if line.startswith("INVITE sip:")]
    assert [invite.split("@")[0] for invite in invites] == [f"INVITE sip:{destination}", f"INVITE sip:{forwarded_to}"]
    assert "302 Moved Temporarily" in b.seen()


def test_a_redirect_the_toll_fraud_guards_refuse_is_not_followed(sip, calls, agent, fresh_e164):  # type: ignore[no-untyped-def]
    calls.update_call_settings(allowed_countries=["US"])
    a, _ = sip.phones_for("answer", None)
    b = redirecting_carrier(sip, "+442079460000", calls=1)  # London: not an allowed country
    _, stream = place(calls, agent, fresh_e164())
    with stream:
        found = events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)
    assert types(found) == ["NEW_CALL", "RINGING", "HANGUP"]  # A rang and answered; B redirected
    assert (found[-1].status, found[-1].hangup_cause) == (S.CALL_STATUS_FAILED, H.HANGUP_CAUSE_CONGESTION)
    assert a.wait() == 0 and b.wait() == 0  # A got its BYE; B its ACK, and no second INVITE
    assert b.seen().count("INVITE sip:") == 1


def test_a_call_cancelled_while_the_agent_rings_cancels_the_agents_leg(
    sip, calls, agent, fresh_e164
):  # type: ignore[no-untyped-def]
    a, _ = sip.phones_for("rings", None)
    call, stream = place(calls, agent, fresh_e164())
    with stream:
        assert types(events_of(stream, count=2)) == ["NEW_CALL", "RINGING"]
        calls.cancel_call(call.ref)
        (hangup,) = events_of(stream, count=1)
    assert (hangup.status, hangup.hangup_cause) == (S.CALL_STATUS_CANCELED, H.HANGUP_CAUSE_CANCEL)
    assert a.wait() == 0 and "CANCEL sip:" in a.seen()


def test_the_controls_the_sip_gateway_does_not_carry_yet_are_unimplemented(
    sip, calls, agent, fresh_e164
):  # type: ignore[no-untyped-def]
    a, b = sip.phones_for("answer", "answer")
    call = wait_for(calls, place(calls, agent, fresh_e164())[0].ref, S.CALL_STATUS_IN_PROGRESS)
    with pytest.raises(VoxplaneError, match="The SIP gateway does not .* yet") as refused:
        calls.transfer_call(call.ref, destination="+14155550111")
    assert refused.value.code == grpc.StatusCode.UNIMPLEMENTED
    assert calls.get_call(call.ref).status == S.CALL_STATUS_IN_PROGRESS  # nothing changed
    calls.hangup_call(call.ref)
    assert a.wait() == 0 and b.wait() == 0


def test_a_stopping_server_hangs_up_the_calls_it_carries(sip, tenant, calls, agent, fresh_e164):  # type: ignore[no-untyped-def]
    a, b = sip.phones_for("answer", "answer")
    assert b is not None
    call = wait_for(calls, place(calls, agent, fresh_e164())[0].ref, S.CALL_STATUS_IN_PROGRESS)
    sip.restart()
    assert a.wait() == 0 and b.wait() == 0  # BYE on both legs, before the server was gone
    assert "BYE sip:" in a.seen() and "BYE sip:" in b.seen()
    with pytest.raises(NgError, match="refused 'query'"):
        sip.ng("query", call_id=call.ref)
    with Calls(endpoint=sip.server.address, api_key=tenant.keys[Role.MEMBER]) as again:
        stopped = again.get_call(call.ref)
    assert (stopped.status, stopped.hangup_cause) == (S.CALL_STATUS_FAILED, H.HANGUP_CAUSE_SERVICE_RESTART)
    # The new server's gateway places calls as the first did.
    a, b = sip.phones_for("answer", "busy")
    with Calls(endpoint=sip.server.address, api_key=tenant.keys[Role.MEMBER]) as again:
        _, stream = place(again, agent, fresh_e164())
        with stream:
            assert events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)[-1].hangup_cause == H.HANGUP_CAUSE_BUSY
    assert a.wait() == 0 and b.wait() == 0


def test_a_control_the_media_relay_refuses_is_unavailable_and_changes_nothing(
    sip, calls, agent, fresh_e164
):  # type: ignore[no-untyped-def]
    a, b = sip.phones_for("answer", "answer")
    call = wait_for(calls, place(calls, agent, fresh_e164())[0].ref, S.CALL_STATUS_IN_PROGRESS)
    sip.ng("delete", call_id=call.ref)  # rtpengine forgets the call behind the gateway's back
    with pytest.raises(UnavailableError, match="The media relay did not carry out the order: rtpengine refused"):
        calls.with_api_key(calls.options.api_key, timeout=3).mute_call(call.ref, mute=True)
    assert not calls.get_call(call.ref).muted
    calls.hangup_call(call.ref)
    assert a.wait() == 0 and b.wait() == 0


def test_while_the_destination_rings_the_caller_hears_ringback(sip, calls, agent, fresh_e164):  # type: ignore[no-untyped-def]
    a, b = sip.phones_for("answer", "rings")
    wire = capture({a.media_port})
    if wire is None:
        pytest.skip("no packet socket here (not root): what reaches the phone cannot be seen")
    try:
        _, stream = place(calls, agent, fresh_e164(), timeout=2)
        with stream:
            hangup = events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)[-1]
    finally:
        wire.stop()
    assert hangup.hangup_cause == H.HANGUP_CAUSE_NO_ANSWER
    # B never sends media, so all A receives is rtpengine's ringback: PCMA, a tone (not one repeated byte).
    to_a = wire.between(a.media_port, 0, time.monotonic())
    assert sum(p[2] == 8 and not p[3] for p in to_a) > 30, len(to_a)
    assert a.wait() == 0 and b.wait() == 0


def test_without_rtpengine_a_call_fails_with_congestion_and_rings_nobody(
    sip, tenant, agent, fresh_e164, monkeypatch
):  # type: ignore[no-untyped-def]
    a, b = sip.phones_for("answer", "answer")
    monkeypatch.setenv("VOXPLANE_RTPENGINE_NG", f"127.0.0.1:{free_udp_port()}")  # nobody listens there
    config.reload()
    try:
        sip.restart()
        with Calls(endpoint=sip.server.address, api_key=tenant.keys[Role.MEMBER]) as calls:
            _, stream = place(calls, agent, fresh_e164())
            with stream:
                found = events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)
        assert types(found) == ["NEW_CALL", "HANGUP"]
        assert (found[-1].status, found[-1].hangup_cause) == (S.CALL_STATUS_FAILED, H.HANGUP_CAUSE_CONGESTION)
        assert "INVITE" not in a.seen() and "INVITE" not in b.seen()
    finally:
        a.stop()  # they were never called: free their ports for the next test
        b.stop()
        monkeypatch.undo()
        config.reload()
        sip.restart()


@pytest.mark.parametrize("backend", backends())
def test_a_killed_server_hangs_up_the_calls_it_left_up_when_it_starts_again(backend, tmp_path):  # type: ignore[no-untyped-def]
    require("rtpengine", "sipp")
    rtpengine = Rtpengine(tmp_path)
    a_port, b_port = free_udp_port(), free_udp_port()
    a, b = Phone("answer", tmp_path, "A", a_port), Phone("answer", tmp_path, "B", b_port)
    time.sleep(0.3)  # sipp binds its socket
    try:
        with own_database(backend, tmp_path) as (env, key):
            env.update(VOXPLANE_CALL_GATEWAY="sip", VOXPLANE_SIP_PORT=str(free_udp_port()),
                       VOXPLANE_SIP_PROXY=f"127.0.0.1:{a_port}", VOXPLANE_SIP_TRUNK=f"127.0.0.1:{b_port}",
                       VOXPLANE_RTPENGINE_NG=f"127.0.0.1:{rtpengine.ng_port}")
            first = Serving(env)
            try:
                with Agents(endpoint=first.address, api_key=key) as agents:
                    agent = agents.create_agent(name="Agent", username=f"a{secrets.token_hex(4)}",
                                                secret=f"Secret-{secrets.token_hex(8)}", domains=["sip.test"])
                with Calls(endpoint=first.address, api_key=key) as calls:
                    ref = wait_for(calls, place(calls, agent, "+14155550123")[0].ref, S.CALL_STATUS_IN_PROGRESS).ref
            finally:
                first.kill()  # no BYE: both phones stay in the call, its media anchored at rtpengine
            assert a.process.poll() is None and b.process.poll() is None
            assert "BYE" not in a.seen() + b.seen()
            assert ng(rtpengine.ng_port, "query", call_id=ref)["result"] == "ok"
            url = env.get("VOXPLANE_DATABASE_URL") or f"sqlite:///{tmp_path / 'voxplane.db'}"
            database = Database(url, threads=1)
            try:
                def stored() -> list[str]:
                    return database.transaction(lambda s: sorted(
                        d.leg for d in s.query(SipDialog).filter_by(call_ref=ref)), write=False)

                assert stored() == ["A", "B"]  # both legs' dialogs, kept in the database
                second = Serving(env)
                try:
                    assert a.wait() == 0 and b.wait() == 0  # each got its BYE, and answered it
                    assert "BYE sip:" in a.seen() and "BYE sip:" in b.seen()
                    with pytest.raises(NgError, match="refused 'query'"):
                        ng(rtpengine.ng_port, "query", call_id=ref)  # the media was released
                    with Calls(endpoint=second.address, api_key=key) as calls:
                        ended = calls.get_call(ref)
                    assert (ended.status, ended.hangup_cause) == (S.CALL_STATUS_FAILED, H.HANGUP_CAUSE_SERVICE_RESTART)
                    assert stored() == []
                finally:
                    second.stop()
            finally:
                database.close()
    finally:
        a.stop()
        b.stop()
        rtpengine.stop()


# --- recording and announcements ------------------------------------------------------------------------


def channels_of(data: bytes) -> tuple[wave._wave_params, list[list[int]]]:
    """A WAV's parameters and each channel's 16-bit samples."""
    with wave.open(io.BytesIO(data), "rb") as file:
        params = file.getparams()
        frames = file.readframes(params.nframes)
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    return params, [list(samples[i :: params.nchannels]) for i in range(params.nchannels)]


def test_a_recorded_call_is_a_wav_of_both_parties_fetched_over_grpc(
    sip, calls, agent, fresh_e164
):  # type: ignore[no-untyped-def]
    a, b = sip.phones_for("answer", "answer")
    call = wait_for(calls, place(calls, agent, fresh_e164())[0].ref, S.CALL_STATUS_IN_PROGRESS)
    with pytest.raises(NotFoundError, match="has no recording"):
        calls.get_call_recording(call.ref)
    started = time.monotonic()
    assert calls.record_call(call.ref, start=True).recording
    time.sleep(2)
    assert not calls.record_call(call.ref, start=False).recording
    recorded_for = time.monotonic() - started
    found = calls.get_call_recording(call.ref)
    calls.hangup_call(call.ref)
    assert a.wait() == 0 and b.wait() == 0
    described = found.recording
    assert (described.content_type, described.channels, described.sample_rate) == ("audio/wav", 2, 8000)
    assert described.size_bytes == len(found.data)
    params, (said_by_a, said_by_b) = channels_of(found.data)
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, 8000)
    seconds = params.nframes / 8000
    assert abs(described.duration.ToMilliseconds() - seconds * 1000) <= 1
    assert 1.5 <= seconds <= recorded_for + 0.5, (seconds, recorded_for)
    # Each phone plays sipp's g711a.pcap (speech): both channels carry sound, not silence.
    for channel in (said_by_a, said_by_b):
        assert sum(abs(sample) > 500 for sample in channel) > len(channel) // 10
    # rtpengine's files of the call are gone once the call ended; the WAV stays with the call.
    assert not [path for path in sip.rtpengine.recordings.rglob(f"*{call.ref}*")]
    assert calls.get_call_recording(call.ref).data == found.data


def test_a_call_that_ends_while_recording_keeps_its_recording(sip, calls, agent, fresh_e164):  # type: ignore[no-untyped-def]
    a, b = sip.phones_for("answer", "answer")
    call = wait_for(calls, place(calls, agent, fresh_e164())[0].ref, S.CALL_STATUS_IN_PROGRESS)
    calls.record_call(call.ref, start=True)
    time.sleep(1)
    calls.hangup_call(call.ref)
    assert a.wait() == 0 and b.wait() == 0
    params, channels = channels_of(calls.get_call_recording(call.ref).data)
    assert params.nframes >= 8000 * 0.8 and all(any(abs(x) > 500 for x in channel) for channel in channels)


def level_wav(level: int, seconds: float, rate: int) -> bytes:
    """A 16-bit WAV holding one sample value throughout: G.711 makes it one repeated byte, a signature no
    phone's audio has."""
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(struct.pack("<h", level) * int(rate * seconds))
    return out.getvalue()


def alaw_byte(level: int) -> int:
    """The A-law byte whose sample is nearest `level`."""
    return min(range(256), key=lambda byte: abs(struct.unpack("<h", DECODE[PCMA][byte])[0] - level))


@pytest.fixture(scope="module")
def media_server() -> Iterator[Receiver]:
    level = level_wav(3000, 1, 48000)  # 96 KB (rtpengine resamples it): more than one NG datagram holds
    receiver = Receiver(by_path={
        "/level.wav": [Reply(level, "audio/wav")] * 10,
        "/too-big.wav": [Reply(level * 60, "audio/wav")] * 10,  # 5.8 MB, over the 5 MB limit
        "/page.html": [Reply("<html></html>", "text/html")] * 10,
        "/fake.wav": [Reply(b"RIFF not really a wave", "audio/wav")] * 10,
        "/gone.wav": [404] * 10,
    })
    yield receiver
    receiver.close()


def test_play_audio_plays_the_fetched_wav_to_both_phones(sip, calls, agent, fresh_e164, media_server):  # type: ignore[no-untyped-def]
    a, b = sip.phones_for("answer", "answer")
    assert b is not None
    wire = capture({a.media_port, b.media_port})
    if wire is None:
        pytest.skip("no packet socket here (not root): what reaches the phones cannot be seen")
    try:
        call, stream = place(calls, agent, fresh_e164())
        with stream:
            events_of(stream, until=T.CALL_EVENT_TYPE_ANSWER)
            time.sleep(0.5)
            asked_at = time.monotonic()
            calls.play_audio(call.ref, url=media_server.url("/level.wav"))
            played_at = time.monotonic()  # rtpengine plays it from before here, for 1 s
            time.sleep(2.5)
            calls.hangup_call(call.ref)
            assert types(events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)) == ["PLAYING", "HANGUP"]
    finally:
        wire.stop()
    assert a.wait() == 0 and b.wait() == 0
    signature = alaw_byte(3000)
    for phone in (a, b):
        heard_from = min((p[0] for p in wire.between(phone.media_port, asked_at, played_at) if p[3] and p[4] == signature),
                         default=None)
        assert heard_from is not None, f"the file's level never reached the phone at {phone.media_port}"
        before, playing, after = ([p for p in wire.between(phone.media_port, start, end) if p[2] == 8] for start, end in (
            (asked_at - 0.5, asked_at), (heard_from + 0.1, heard_from + 0.8), (heard_from + 1.5, heard_from + 2.3)))
        # Before, the phone heard the other's speech; while the file plays, its one level (the other party's
        # media is held back; a packet of rtpengine's resampler settling aside); after its 1 s, not any more.
        assert before and not any(p[3] and p[4] == signature for p in before)
        heard = sum(p[3] and p[4] == signature for p in playing)
        assert heard > 20 and heard >= 0.9 * len(playing), (heard, len(playing), signature)
        assert not any(p[3] and p[4] == signature for p in after)
    # Once played, each party's media reaches the other again.
    rtpengine_log = sip.rtpengine.log.read_text()
    for tag in (A_TAG, B_TAG):
        assert rtpengine_log.count(f"Blocking directional media (tag '{tag}')") == rtpengine_log.count(
            f"Unblocking directional media (tag '{tag}')") > 0


@pytest.mark.parametrize(("path", "error", "message"), [
    ("/too-big.wav", FailedPreconditionError, "bytes; at most 5000000 are played"),
    ("/page.html", FailedPreconditionError, "serves 'text/html'; only WAV is played"),
    ("/fake.wav", FailedPreconditionError, "cannot be played: it is not a WAV file"),
    ("/gone.wav", FailedPreconditionError, "answered HTTP 404"),
    ("forbidden", PermissionDeniedError, "127.0.0.2 is a loopback address"),
])
def test_an_announcement_that_cannot_be_played_is_refused_and_changes_nothing(
    sip, calls, agent, fresh_e164, media_server, path, error, message
):  # type: ignore[no-untyped-def]
    a, b = sip.phones_for("answer", "answer")
    call, stream = place(calls, agent, fresh_e164())
    url = f"http://127.0.0.2:{media_server.port}/level.wav" if path == "forbidden" else media_server.url(path)
    with stream:
        events_of(stream, until=T.CALL_EVENT_TYPE_ANSWER)
        with pytest.raises(error, match=message):
            calls.play_audio(call.ref, url=url)
        calls.hangup_call(call.ref)
        assert types(events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)) == ["HANGUP"]  # no PLAYING
    assert a.wait() == 0 and b.wait() == 0
