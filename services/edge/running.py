"""`voxplane edge run`: Kamailio with the deployment's kamailio.cfg, and rtpengine beside it when installed
(userspace only: no kernel module), both in the foreground until SIGTERM or SIGINT, or until one stops."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from ..core.config import settings
from ..core.errors import FailedPrecondition
from .kamailio import Edge, render

log = logging.getLogger(__name__)
PACKAGES = "kamailio kamailio-sqlite-modules kamailio-postgres-modules rtpengine-daemon"


@dataclass(frozen=True)
class Media:
    """rtpengine's control (NG) address and the UDP ports it may relay media on."""

    ng: str
    port_min: int
    port_max: int


def kamailio_command(config: Path, work_dir: Path) -> list[str]:
    binary = shutil.which("kamailio")
    if binary is None:
        raise FailedPrecondition(f"kamailio is not installed: apt-get install --no-install-recommends {PACKAGES}")
    # -DD: stay in the foreground (children still fork); -E: log to stderr; 64 MB shared, 8 MB per process.
    return [binary, "-f", str(config), "-DD", "-E", "-m", "64", "-M", "8",
            "-P", str(work_dir / "kamailio.pid"), "-Y", str(work_dir), "-w", str(work_dir)]


def rtpengine_command(edge: Edge, media: Media) -> list[str] | None:
    """NG on UDP and, for announcements too large for a datagram, TCP at the same address; recording (pcap)
    into VOXPLANE_RTPENGINE_RECORDINGS when it is set (the SIP gateway reads the pcaps there)."""
    binary = shutil.which("rtpengine")
    if binary is None:
        return None
    recordings = settings().rtpengine_recordings
    recording = [f"--recording-dir={recordings}", "--recording-method=pcap"] if recordings else []
    return [binary, "--config-file=none", "--table=-1", f"--interface={edge.listen.host}",
            f"--listen-ng={media.ng}", f"--listen-tcp-ng={media.ng}", *recording,
            f"--port-min={media.port_min}", f"--port-max={media.port_max}",
            "--foreground", "--log-stderr", "--delete-delay=0"]


def run(edge: Edge, work_dir: Path, media: Media) -> int:
    """Runs the edge until a signal or until a process of it stops; its exit status."""
    work_dir = work_dir.resolve()  # Kamailio runs in it (-w): a relative path would then name another place
    work_dir.mkdir(parents=True, exist_ok=True)
    if settings().rtpengine_recordings:
        Path(settings().rtpengine_recordings).mkdir(parents=True, exist_ok=True)  # rtpengine makes only its subfolders
    config = work_dir / "kamailio.cfg"
    config.write_text(render(edge))
    commands = [kamailio_command(config, work_dir)]
    if (rtpengine := rtpengine_command(edge, media)) is not None:
        commands.append(rtpengine)
    else:
        log.warning("rtpengine is not installed: Kamailio runs without a media relay")
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    processes = [subprocess.Popen(command, stdin=subprocess.DEVNULL) for command in commands]
    log.info("edge running", extra={"fields": {
        "listen": f"{edge.listen.uri_host}:{edge.listen.port}", "domains": edge.domains,
        "config": str(config), "pids": [p.pid for p in processes]}})
    ended: subprocess.Popen[bytes] | None = None
    while ended is None and not stopped.wait(0.2):
        ended = next((p for p in processes if p.poll() is not None), None)
    if ended is not None:
        name = Path(commands[processes.index(ended)][0]).name
        log.error("edge process stopped", extra={"fields": {"process": name, "status": ended.returncode}})
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return 0 if ended is None else ended.returncode or 1  # a process that stops by itself is a failure
