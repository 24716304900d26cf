"""`serve --workers N`: N processes serving one gRPC port, the kernel spreading connections among them.

The parent reserves the port (a socket bound with SO_REUSEPORT, never listening, so port 0 becomes one
port for all), then forks the workers before any gRPC object or database connection exists: gRPC's
core and the drivers' sockets do not survive a fork. Each worker binds the same port with
SO_REUSEPORT and is a server like any other, with its index in VOXPLANE_WORKER_INDEX (the Calls
worker `i` takes SIP port VOXPLANE_SIP_PORT + i). The parent only supervises: SIGTERM or SIGINT is
passed on to every worker, which drains as a lone server does; a worker that dies otherwise is forked
again, up to RESTARTS times a minute, after which the parent stops them all and exits 1.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable

from . import config, logs

log = logging.getLogger("voxplane.workers")

RESTARTS = 5  # a minute, before a crash loop stops the whole server
INDEX_VARIABLE = "VOXPLANE_WORKER_INDEX"


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """A socket bound to `host`:`port` with SO_REUSEPORT (not listening), and the port it has: the
    workers bind the same, and port 0 is one free port for all of them. Keep it open while they run."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    reserved = socket.socket(family, socket.SOCK_STREAM)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        reserved.bind((host.strip("[]") or "0.0.0.0", port))
    except OSError as error:
        reserved.close()
        raise SystemExit(f"voxplane: cannot listen on {host}:{port}: {error.strerror}") from None
    return reserved, reserved.getsockname()[1]


def share_metrics(count: int) -> None:
    """Before prometheus-client is imported: several workers keep their counts in files of one folder
    (its multiprocess mode), which worker 0's /metrics sums."""
    if count > 1 and config.settings().metrics_port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        folder = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="voxplane-metrics-")
        parent = os.getpid()

        def remove() -> None:
            if os.getpid() == parent:  # not a worker leaving
                shutil.rmtree(folder, ignore_errors=True)

        atexit.register(remove)


def run(count: int, serve: Callable[[int], None], exited: Callable[[int], None]) -> int:
    """Forks `count` workers, each running `serve(index)`, and supervises them until they have all
    stopped, telling `exited(pid)` of each that ends; returns the exit status for the parent (0 after
    a clean stop)."""
    workers: dict[int, int] = {}  # pid -> index
    stopping = False
    restarts: list[float] = []

    def fork(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: no handler of the parent's, its own index, then a server like any other
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            os.environ[INDEX_VARIABLE] = str(index)
            config.reload()
            logs.configure(config.settings().log_level, worker=index)
            status = 0
            try:
                serve(index)
            except SystemExit as stopped:
                status = stopped.code if isinstance(stopped.code, int) else 1
                if not isinstance(stopped.code, int) and stopped.code:
                    print(stopped.code, file=sys.stderr, flush=True)
            except BaseException:  # noqa: BLE001 - logged, and the worker's status says it failed
                log.exception("worker %d failed", index)
                status = 1
            finally:
                logs.close()
            os._exit(status)
        workers[pid] = index

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    for index in range(count):
        fork(index)
    log.info("workers started", extra={"fields": {"workers": count, "pids": sorted(workers)}})
    status = 0
    while workers:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid not in workers:
            continue
        index = workers.pop(pid)
        exited(pid)
        if stopping:
            status = status or (1 if os.waitstatus_to_exitcode(code) not in (0, -signal.SIGTERM) else 0)
            continue
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < 60] + [now]
        log.error("worker %d (pid %d) exited with status %d", index, pid, os.waitstatus_to_exitcode(code))
        if len(restarts) > RESTARTS:
            log.error("workers are failing repeatedly (%d restarts in a minute): stopping", RESTARTS)
            stop()
            status = 1
            continue
        fork(index)
    return status
