"""Real SIP peers for the SIP gateway's tests, on loopback: an rtpengine (userspace) and sipp phones.

Without the binaries the tests skip, saying which is missing, unless CI=true: there they must run.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import pytest

from voxplane.services.calls.rtpengine import NgClient
from voxplane.services.calls.sip import A_TAG, B_TAG

SCENARIOS = Path(__file__).resolve().parent / "sipp"


def missing_peers(reason: str) -> NoReturn:
    """Skips the test for want of a real peer, except on CI, where the peers are installed: a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


def require(*binaries: str) -> None:
    """Skips the test when a binary is missing, except on CI, where that is a failure."""
    missing = [name for name in binaries if shutil.which(name) is None]
    if missing:
        missing_peers(f"{', '.join(missing)} not installed (Debian: apt-get install rtpengine-daemon sip-tester)")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminates `process`, killing it if it has not ended within 5 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (Kamailio listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


class Rtpengine:
    """rtpengine in userspace (no kernel module: --table=-1) on loopback, its NG control on a free port (UDP,
    and TCP for announcements), recording calls (pcap) into `recordings`."""

    def __init__(self, workdir: Path):
        self.ng_port = free_port()  # its NG control listens on UDP and TCP
        low = random.randrange(20000, 50000, 200)  # its own media port range, unlikely to meet another's
        self.log = workdir / "rtpengine.log"
        self.recordings = workdir / "recordings"
        self.recordings.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            ["rtpengine", "--config-file=none", "--table=-1", "--interface=127.0.0.1",
             f"--listen-ng=127.0.0.1:{self.ng_port}", f"--listen-tcp-ng=127.0.0.1:{self.ng_port}",
             f"--recording-dir={self.recordings}", "--recording-method=pcap",
             f"--port-min={low}", f"--port-max={low + 199}",
             "--foreground", "--log-stderr", "--log-level=6", "--delete-delay=0"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("wb"),
        )
        deadline = time.monotonic() + 10
        while b"Startup complete" not in self.log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rtpengine did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        stop(self.process)


def ng(port: int, command: str, **arguments: Any) -> dict[str, Any]:
    """rtpengine's answer (on 127.0.0.1, its NG control at `port`) to one command."""

    async def ask() -> dict[str, Any]:
        client = await NgClient.connect("127.0.0.1", port)
        try:
            return await client.command(command, **arguments)
        finally:
            client.close()

    return asyncio.run(ask())


def packets_from(port: int, call_ref: str) -> dict[str, int]:
    """RTP packets rtpengine (NG at `port`) received from each leg of the call, by tag."""
    tags = ng(port, "query", call_id=call_ref)["tags"]
    return {
        tag: sum(s.get("stats", {}).get("packets", 0) for m in tags[tag]["medias"] for s in m["streams"])
        for tag in (A_TAG, B_TAG)
    }


class Phone:
    """A sipp UAS playing one scenario of tests/sipp/ for one call (or `calls`), on free SIP and media ports;
    `keys` fill the scenario's [key] fields."""

    def __init__(self, scenario: str, workdir: Path, name: str, port: int | None = None, *, calls: int = 1,
                 keys: dict[str, str] | None = None):
        self.port = port or free_udp_port()
        self.media_port = free_udp_port()
        self.messages = workdir / f"{name}-messages.log"
        self.screen = workdir / f"{name}-screen.log"
        self.process = subprocess.Popen(
            ["sipp", "-sf", str(SCENARIOS / f"{scenario}.xml"), "-i", "127.0.0.1", "-p", str(self.port),
             "-mi", "127.0.0.1", "-mp", str(self.media_port), "-m", str(calls), "-nostdin", "-timeout", "30s",
             "-trace_msg", "-message_file", str(self.messages),
             *(arg for key, value in (keys or {}).items() for arg in ("-key", key, value))],
            stdout=self.screen.open("wb"), stderr=subprocess.STDOUT, cwd=workdir,
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def seen(self) -> str:
        """Every SIP message the phone sent and received so far."""
        return self.messages.read_text(errors="replace") if self.messages.exists() else ""

    def wait(self, timeout: float = 10) -> int:
        """The scenario's exit status: 0 when it ran to its end."""
        return self.process.wait(timeout)

    def stop(self) -> None:
        stop(self.process)


class Capture:
    """RTP arriving on loopback at some UDP ports, read from a packet socket (needs CAP_NET_RAW, as root).

    `packets` holds (time, port, payload type, whether the payload is all one byte (silence), its first byte)."""

    def __init__(self, ports: set[int]):
        self.ports = ports
        self.packets: list[tuple[float, int, int, bool, int]] = []
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))  # IPv4, no link header
        self._socket.bind(("lo", 0))
        self._socket.settimeout(0.2)
        self._running = True
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while self._running:
            try:
                data, where = self._socket.recvfrom(65535)
            except TimeoutError:
                continue
            if where[2] == socket.PACKET_OUTGOING or data[9] != 17:  # each loopback packet shows twice; UDP only
                continue
            udp = (data[0] & 0x0F) * 4
            port = int.from_bytes(data[udp + 2 : udp + 4], "big")
            rtp = data[udp + 8 :]
            if port in self.ports and len(rtp) > 12 and rtp[0] >> 6 == 2:
                payload = rtp[12 + 4 * (rtp[0] & 0x0F) :]
                first = payload[0] if payload else -1  # of a telephone-event: the digit's event code
                self.packets.append((time.monotonic(), port, rtp[1] & 0x7F, len(set(payload)) == 1, first))

    def between(self, port: int, start: float, end: float) -> list[tuple[float, int, int, bool, int]]:
        return [p for p in list(self.packets) if p[1] == port and start <= p[0] < end]

    def stop(self) -> None:
        self._running = False
        self._thread.join(2)
        self._socket.close()


def capture(ports: set[int]) -> Capture | None:
    """A Capture, or None where packet sockets are not allowed (not root)."""
    try:
        return Capture(ports)
    except PermissionError:
        return None
