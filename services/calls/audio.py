"""Audio for the SIP gateway: rtpengine's pcap recordings turned into a WAV of both parties, and the
check that an announcement to play is a WAV file.

rtpengine's pcap recording method writes one pcap per stretch recorded (each `start recording` to its
`stop recording`, or to the call's end), holding the RTP packets it received from each party. Each
party's G.711 payloads are decoded (by table: Python's audioop is gone in 3.13) onto a timeline kept
by the packets' capture times, so a gap in what a party sent (hold, silence suppression) stays a gap;
the stretches follow one another in the WAV.
"""

from __future__ import annotations

import io
import struct
import time
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

RATE = 8000  # G.711's samples per second
PCMU, PCMA = 0, 8  # the static RTP payload types
WAV_TYPES = frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"})


def _ulaw(byte: int) -> int:
    byte = ~byte & 0xFF
    magnitude = (((byte & 0x0F) << 3) + 0x84) << ((byte >> 4) & 0x07)
    return 0x84 - magnitude if byte & 0x80 else magnitude - 0x84


def _alaw(byte: int) -> int:
    byte ^= 0x55
    exponent, mantissa = (byte >> 4) & 0x07, byte & 0x0F
    magnitude = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if byte & 0x80 else -magnitude


# Each G.711 byte's 16-bit little-endian PCM sample (ITU-T G.711), by payload type.
DECODE = {pt: [struct.pack("<h", decode(byte)) for byte in range(256)] for pt, decode in ((PCMU, _ulaw), (PCMA, _alaw))}


def g711_to_pcm(payload_type: int, payload: bytes) -> bytes:
    """16-bit little-endian PCM of a PCMU or PCMA payload."""
    table = DECODE[payload_type]
    return b"".join(table[byte] for byte in payload)


@dataclass(frozen=True)
class Packet:
    time: float  # capture time, seconds
    port: int  # the UDP port it was sent to (rtpengine's port for the party that sent it)
    payload_type: int
    payload: bytes


def rtp_packets(pcap: bytes) -> Iterator[Packet]:
    """The RTP packets over UDP (IPv4 or IPv6) in a classic pcap file, raw IP or Ethernet frames."""
    if len(pcap) < 24:
        return
    magic = pcap[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    fraction = 1e9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e6
    link = struct.unpack(order + "I", pcap[20:24])[0]
    at = 24
    while at + 16 <= len(pcap):
        seconds, part, captured, _ = struct.unpack(order + "IIII", pcap[at : at + 16])
        frame = pcap[at + 16 : at + 16 + captured]
        at += 16 + captured
        ip = frame[14:] if link == 1 else frame  # 1: Ethernet; 101 and 228: raw IP
        if ip and ip[0] >> 4 == 4 and len(ip) > 20 and ip[9] == 17:
            udp = ip[(ip[0] & 0x0F) * 4 :]
        elif ip and ip[0] >> 4 == 6 and len(ip) > 40 and ip[6] == 17:
            udp = ip[40:]
        else:
            continue
        rtp = udp[8:]
        if len(udp) < 8 or len(rtp) < 12 or rtp[0] >> 6 != 2:
            continue
        start = 12 + 4 * (rtp[0] & 0x0F)
        if rtp[0] & 0x10 and len(rtp) >= start + 4:  # a header extension
            start += 4 + 4 * int.from_bytes(rtp[start + 2 : start + 4], "big")
        end = len(rtp) - (rtp[-1] if rtp[0] & 0x20 else 0)  # padding
        port = int.from_bytes(udp[2:4], "big")
        yield Packet(seconds + part / fraction, port, rtp[1] & 0x7F, rtp[start:end])


@dataclass(frozen=True)
class Wav:
    data: bytes
    duration_ms: int
    channels: int = 2
    sample_rate: int = RATE


def wav_of(pcaps: Sequence[bytes], channel_ports: Sequence[set[int]]) -> Wav:
    """One WAV (16-bit PCM at 8 kHz) of the recorded stretches `pcaps`, in order: channel i is what was
    sent to `channel_ports[i]` (a party's ports at rtpengine). Payloads other than G.711 (DTMF events,
    comfort noise) are left out."""
    tracks = [bytearray() for _ in channel_ports]
    for pcap in pcaps:
        stretch = [bytearray() for _ in channel_ports]
        packets = [p for p in rtp_packets(pcap) if p.payload_type in DECODE]
        start = min((p.time for p in packets), default=0.0)
        for packet in packets:
            channel = next((i for i, ports in enumerate(channel_ports) if packet.port in ports), None)
            if channel is None:
                continue
            at = 2 * round((packet.time - start) * RATE)
            pcm = g711_to_pcm(packet.payload_type, packet.payload)
            track = stretch[channel]
            if len(track) < at:
                track.extend(bytes(at - len(track)))  # silence where nothing came
            track[at : at + len(pcm)] = pcm
        length = max((len(track) for track in stretch), default=0)
        for track, part in zip(tracks, stretch, strict=True):
            track += part + bytes(length - len(part))
    frames = len(tracks[0]) // 2 if tracks else 0
    interleaved = bytearray(2 * frames * len(tracks))
    width = 2 * len(tracks)
    for i, track in enumerate(tracks):
        interleaved[2 * i :: width] = track[0::2]
        interleaved[2 * i + 1 :: width] = track[1::2]
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(len(tracks))
        file.setsampwidth(2)
        file.setframerate(RATE)
        file.writeframes(bytes(interleaved))
    return Wav(out.getvalue(), frames * 1000 // RATE, len(tracks))


def wav_problem(data: bytes) -> str | None:
    """Why `data` is not a WAV file rtpengine can play (None when it is one)."""
    try:
        with wave.open(io.BytesIO(data), "rb") as file:
            if file.getnframes() == 0:
                return "it holds no audio"
    except (wave.Error, EOFError, struct.error) as error:
        return f"it is not a WAV file ({error or 'cut short'})"
    return None


def finished_pcaps(directory: Path, call_id: str, wait: float = 2.0) -> list[Path]:
    """The pcaps rtpengine (--recording-method=pcap, --recording-dir=`directory`) finished for `call_id`,
    oldest first. rtpengine keeps a stretch's metadata in tmp/ while it records and moves it to
    metadata/ once the pcap is closed (at `stop recording`, or the call's deletion): waits up to `wait`
    seconds for that. The metadata's first line names the pcap; the pcap is looked for in pcaps/ here,
    since rtpengine may see the directory under another path."""
    deadline = time.monotonic() + wait
    while any((directory / "tmp").glob(f"rtpengine-meta-{call_id}-*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    found = []
    for metadata in (directory / "metadata").glob(f"rtpengine-meta-{call_id}-*.txt"):
        named = metadata.read_text(errors="replace").partition("\n")[0].strip()
        pcap = directory / "pcaps" / Path(named).name
        if pcap.is_file():
            found.append(pcap)
    return sorted(found, key=lambda pcap: pcap.stat().st_mtime)


def remove_recordings(directory: Path, call_id: str) -> None:
    """Removes rtpengine's files of `call_id` (pcaps and metadata), once its WAV is stored."""
    for pattern in (f"pcaps/{call_id}-*.pcap", f"metadata/rtpengine-meta-{call_id}-*", f"tmp/rtpengine-meta-{call_id}-*"):
        for path in directory.glob(pattern):
            path.unlink(missing_ok=True)
