"""Real SIP peers for the SIP gateway's tests, on loopback: an rtpengine (userspace) and sipp phones.

Without the binaries the tests skip, saying which is missing, unless CI=true: there they must run.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).resolve().parent / "sipp"


def require(*binaries: str) -> None:
    """Skips the test when a binary is missing, except on CI, where that is a failure."""
    missing = [name for name in binaries if shutil.which(name) is None]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed (Debian: apt-get install rtpengine-daemon sip-tester)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Rtpengine:
    """rtpengine in userspace (no kernel module: --table=-1) on loopback, its NG control on a free port."""

    def __init__(self, workdir: Path):
        self.ng_port = free_udp_port()
        low = random.randrange(20000, 50000, 200)  # its own media port range, unlikely to meet another's
        self.log = workdir / "rtpengine.log"
        self.process = subprocess.Popen(
            ["rtpengine", "--config-file=none", "--table=-1", "--interface=127.0.0.1",
             f"--listen-ng=127.0.0.1:{self.ng_port}", f"--port-min={low}", f"--port-max={low + 199}",
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
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Phone:
    """A sipp UAS playing one scenario of tests/sipp/ for one call, on free SIP and media ports."""

    def __init__(self, scenario: str, workdir: Path, name: str, port: int | None = None):
        self.port = port or free_udp_port()
        self.media_port = free_udp_port()
        self.messages = workdir / f"{name}-messages.log"
        self.screen = workdir / f"{name}-screen.log"
        self.process = subprocess.Popen(
            ["sipp", "-sf", str(SCENARIOS / f"{scenario}.xml"), "-i", "127.0.0.1", "-p", str(self.port),
             "-mi", "127.0.0.1", "-mp", str(self.media_port), "-m", "1", "-nostdin", "-timeout", "30s",
             "-trace_msg", "-message_file", str(self.messages)],
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
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

