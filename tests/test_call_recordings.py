"""Call recordings: rtpengine's pcaps made a WAV of both parties (G.711 decoded by table), stored with the
call and fetched over gRPC (GetCallRecording), on every backend; the simulated network records no audio.
The SIP gateway making them from real calls is in test_sip_gateway.py."""

from __future__ import annotations

import io
import math
import struct
import wave
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from voxplane import NotFoundError
from voxplane.services.calls import audio, recordings
from voxplane.services.calls.gateway import Recording
from voxplane.services.calls.models import Call, CallRecording

from .test_call_history import calls_client, insert_calls
from .test_calls import S, answered, new_agent, wait_for


def test_g711_decodes_by_the_standards_table():
    # ITU-T G.711's extremes and silences; then every byte as the stdlib's audioop (gone in 3.13) did.
    decoded = {pt: struct.unpack("<256h", audio.g711_to_pcm(pt, bytes(range(256)))) for pt in (audio.PCMU, audio.PCMA)}
    assert (decoded[audio.PCMU][0x00], decoded[audio.PCMU][0x80], decoded[audio.PCMU][0xFF]) == (-32124, 32124, 0)
    assert (decoded[audio.PCMA][0x2A], decoded[audio.PCMA][0xAA], decoded[audio.PCMA][0xD5]) == (-32256, 32256, 8)
    audioop = pytest.importorskip("audioop")
    assert audio.g711_to_pcm(audio.PCMU, bytes(range(256))) == audioop.ulaw2lin(bytes(range(256)), 2)
    assert audio.g711_to_pcm(audio.PCMA, bytes(range(256))) == audioop.alaw2lin(bytes(range(256)), 2)


def pcap_of(packets: list[tuple[float, int, int, bytes]]) -> bytes:
    """A raw-IP pcap, as rtpengine writes one, of (time, destination port, payload type, payload) RTP over UDP."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]
    for n, (at, port, payload_type, payload) in enumerate(packets):
        rtp = struct.pack("!BBHII", 0x80, payload_type, n, n * 160, 7) + payload
        udp = struct.pack("!HHHH", 40000, port, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes(4), bytes(4)) + udp
        out.append(struct.pack("<IIII", int(at), round(at % 1 * 1e6), len(ip), len(ip)) + ip)
    return b"".join(out)


def samples(data: bytes) -> tuple[wave._wave_params, list[list[int]]]:
    with wave.open(io.BytesIO(data), "rb") as file:
        params = file.getparams()
        frames = struct.unpack(f"<{params.nframes * params.nchannels}h", file.readframes(params.nframes))
    return params, [list(frames[i :: params.nchannels]) for i in range(params.nchannels)]


def test_a_wav_has_one_channel_per_party_on_the_packets_timeline():
    loud, quiet = bytes([0xAA]) * 160, bytes([0xD5]) * 160  # PCMA: +32256 and +8
    first = pcap_of([(100.0, 5000, 8, loud), (100.0, 6000, 0, bytes([0x80]) * 160), (100.04, 5000, 8, loud),
                     (100.02, 6000, 101, b"\x05\x0a\x00\xa0"), (100.02, 7000, 8, quiet)])  # DTMF, another port
    second = pcap_of([(200.0, 6000, 8, quiet)])
    wav = audio.wav_of([first, second], [{5000}, {6000}])
    params, (a, b) = samples(wav.data)
    assert (params.nchannels, params.sampwidth, params.framerate, wav.channels, wav.sample_rate) == (2, 2, 8000, 2, 8000)
    # Stretch one: A at 0 and 40 ms, silence between (a gap it did not send); B at 0 ms. Then stretch two.
    assert params.nframes == 480 + 160 and wav.duration_ms == 80
    assert a[:160] == [32256] * 160 and a[160:320] == [0] * 160 and a[320:480] == [32256] * 160
    assert b[:160] == [32124] * 160 and b[160:480] == [0] * 320
    assert a[480:] == [0] * 160 and b[480:] == [8] * 160


def test_only_a_wav_with_audio_is_played():
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(8000)
        file.writeframes(b"".join(struct.pack("<h", round(8000 * math.sin(n / 5))) for n in range(800)))
    assert audio.wav_problem(out.getvalue()) is None
    assert "not a WAV file" in (audio.wav_problem(b"ID3\x03 an mp3") or "")
    assert "holds no audio" in (audio.wav_problem(audio.wav_of([], [set(), set()]).data) or "")


def stored(db, ref: str, wav: bytes, duration_ms: int = 1500) -> None:  # type: ignore[no-untyped-def]
    recording = Recording(ref, wav, duration_ms, 2, 8000, datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    assert db.transaction(lambda s: recordings.store(s, recording), write=True)


def test_a_stored_recording_streams_in_chunks_and_goes_with_its_call(tenant, other_tenant, db):  # type: ignore[no-untyped-def]
    [ref] = insert_calls(db, tenant, {})
    call_id = db.transaction(lambda s: s.scalar(select(Call.id).where(Call.ref == ref)), write=False)
    big = bytes(range(256)) * 3000  # 768 KB: several messages
    stored(db, ref, b"an earlier recording", 900)
    stored(db, ref, big)  # replaces it
    with calls_client(tenant) as calls:
        found = calls.get_call_recording(ref)
        assert found.data == big
        described = found.recording
        assert (described.content_type, described.size_bytes, described.channels, described.sample_rate) == (
            "audio/wav", len(big), 2, 8000)
        assert described.duration.ToMilliseconds() == 1500
        assert described.update_time.ToDatetime(tzinfo=UTC) == datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
        with other_tenant.calls() as others, pytest.raises(NotFoundError, match="No call has the ref"):
            others.get_call_recording(ref)
        calls.delete_call_records(refs=[ref])
        with pytest.raises(NotFoundError, match="No call has the ref"):
            calls.get_call_recording(ref)
    left = select(func.count()).select_from(CallRecording).where(CallRecording.call_id == call_id)
    assert db.transaction(lambda s: s.scalar(left), write=False) == 0  # the WAV went with its call


def test_a_recording_of_a_call_deleted_meanwhile_is_not_stored(db):  # type: ignore[no-untyped-def]
    recording = Recording("no-such-call", b"RIFF", 1, 2, 8000, datetime.now(UTC))
    assert not db.transaction(lambda s: recordings.store(s, recording), write=True)


def test_the_simulated_network_records_no_audio(tenant):  # type: ignore[no-untyped-def]
    with tenant.calls() as calls:
        call = answered(calls, new_agent(tenant))
        assert calls.record_call(call.ref, start=True).recording
        assert not calls.record_call(call.ref, start=False).recording
        with pytest.raises(NotFoundError, match="simulated one, which records no audio"):
            calls.get_call_recording(call.ref)
        calls.hangup_call(call.ref)
        wait_for(calls, call.ref, S.CALL_STATUS_COMPLETED)
        with pytest.raises(NotFoundError, match="has no recording"):
            calls.get_call_recording(call.ref)
