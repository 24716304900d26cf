"""`voxplane cluster` (`make cluster`): docker-compose.yml's topology as local processes, without Docker.

It reads the compose file rather than a copy of it, so the two cannot drift: every service built from the
Dockerfile runs as written there, its `command` after `voxplane` and its `environment`, one process per
replica, in `depends_on` order (a one-shot service awaited until it exits 0, a service with a health check
until the check passes). Other services (PostgreSQL) are the local ones: the database is `database_url`.
What a container network gives is mapped onto this machine's loopback:

- a service's host name, or its fixed `ipv4_address`, reads as 127.0.0.1; `0.0.0.0` too;
- a service's container port (its command's `--port`, the container side of its `ports`, its `expose`)
  reads as the host port compose publishes it at (replica i: the i-th of a published range), else as
  itself; with `free_ports`, as a free port of its own (tests);
- `name:port` of a service with replicas, or `dns:///name:port` (every replica's address, from Docker's
  DNS), reads as the comma-separated addresses of all its replicas, which the client balances round robin.

A value that still names a compose host after that is refused rather than run wrong.
"""

from __future__ import annotations

import itertools
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from .core.errors import FailedPrecondition, InvalidArgument
from .persistence.db import normalise_url

LOOPBACK = "127.0.0.1"
ANY_ADDRESS = "0.0.0.0"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/voxplane_cluster"
HEALTH_POLL = 0.5  # seconds between two health checks of a starting process (compose waits its interval)
START_TIMEOUT = 300  # seconds a process may take to become healthy, or a one-shot one to finish
_ADDRESS = re.compile(r"(dns:///)?([A-Za-z0-9_.-]+):(\d+)")


@dataclass
class Process:
    """One replica of a compose service, as it runs here."""

    name: str  # `numbers.1`, or the service's name when it has one replica
    service: str
    args: list[str]  # after `voxplane`
    env: dict[str, str]  # its VOXPLANE_* settings
    health: list[str] | None  # the health check's argv, after `voxplane`; None: none
    depends_on: dict[str, str]  # service -> compose condition
    stop_grace: float
    ports: dict[int, int] = field(default_factory=dict)  # container port -> local port
    popen: subprocess.Popen[str] | None = None
    relay: threading.Thread | None = None  # prints its lines


def load(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError as error:
        raise FailedPrecondition("`voxplane cluster` reads docker-compose.yml with PyYAML: pip install "
                                 "'voxplane[dev]' (or pyyaml)") from error
    with path.open(encoding="utf-8") as file:
        loaded: dict[str, Any] = yaml.safe_load(file)  # YAML 1.1 merge keys (<<), as compose reads them
    return loaded


def _environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(entry.split("=", 1) for entry in raw)
    return {str(name): str(value) for name, value in raw.items()}


def _seconds(duration: str | int | float | None, default: float) -> float:
    if duration is None:
        return default
    if isinstance(duration, (int, float)):
        return float(duration)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(amount) * units[unit] for amount, unit in re.findall(r"([\d.]+)(ms|s|m|h)", duration))


def _published(service: dict[str, Any]) -> tuple[dict[int, list[int]], set[int]]:
    """Container port -> the host ports it is published at (one per replica, or one for all), and the
    container ports it names without publishing them (`expose`, a bare `ports` entry)."""
    published: dict[int, list[int]] = {}
    unpublished: set[int] = set()
    for entry in service.get("ports") or []:
        spec = str(entry).split("/")[0]
        host, _, container = spec.rpartition(":")
        host = host.rpartition(":")[2]  # an IP to bind it on is not ours to read
        if "-" in container:
            continue  # a range of container ports (the RTP ports) is taken as it is
        if not host:
            unpublished.add(int(container))
            continue
        low, _, high = host.partition("-")
        published[int(container)] = list(range(int(low), int(high or low) + 1))
    for entry in service.get("expose") or []:
        unpublished.add(int(str(entry).split("/")[0]))
    return published, unpublished


def _option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args[:-1] else None


def free_port() -> int:
    """A port free for both TCP and UDP on loopback now."""
    while True:
        with socket.socket() as tcp:
            tcp.bind((LOOPBACK, 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(type=socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
            return port


def plan(compose: dict[str, Any], database_url: str, *, skip: Iterable[str] = (),
         free_ports: bool = False) -> list[Process]:
    """The processes of `compose`'s services built from the Dockerfile (but those in `skip`), in the
    order they start, their addresses mapped onto this machine."""
    services: dict[str, dict[str, Any]] = compose.get("services") or {}
    unknown = set(skip) - set(services)
    if unknown:
        raise InvalidArgument.of("skip", f"no such service in the compose file: {', '.join(sorted(unknown))}")
    built = {name: service for name, service in services.items() if "build" in service}
    fixed = _fixed_addresses(services)
    processes: list[Process] = []
    for name, service in built.items():
        replicas = int((service.get("deploy") or {}).get("replicas", 1))
        published, unpublished = _published(service)
        command = [str(arg) for arg in service.get("command") or []]
        grpc_port = _option(command, "--port")
        container_ports = set(published) | unpublished | ({int(grpc_port)} if grpc_port else set())
        check = (service.get("healthcheck") or {})
        test = None if check.get("disable") else check.get("test")
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {dependency: {"condition": "service_started"} for dependency in depends}
        for replica in range(replicas):
            ports = {port: (free_port() if free_ports else
                            published[port][replica % len(published[port])] if port in published else port)
                     for port in sorted(container_ports)}
            processes.append(Process(
                name=f"{name}.{replica + 1}" if replicas > 1 else name, service=name, args=command,
                env=_environment(service), health=_health_argv(name, test), stop_grace=_seconds(
                    service.get("stop_grace_period"), 10),
                depends_on={dependency: (how or {}).get("condition", "service_started")
                            for dependency, how in depends.items()}, ports=ports))
    chosen = [process for process in processes if process.service not in set(skip)]
    for process in chosen:
        local = _Mapping(process, processes, fixed, set(services))
        process.args = [local.value(arg) for arg in process.args]
        # Compose's database is this machine's.
        process.env = {variable: database_url if variable == "VOXPLANE_DATABASE_URL" else local.value(value)
                       for variable, value in process.env.items()}
        if process.health is not None:
            process.health = [local.value(arg) for arg in process.health]
    return _in_start_order(chosen)


def _fixed_addresses(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Fixed address (`networks.*.ipv4_address`) -> its service."""
    fixed: dict[str, str] = {}
    for name, service in services.items():
        networks = service.get("networks")
        for network in networks.values() if isinstance(networks, dict) else ():
            if network and network.get("ipv4_address"):
                fixed[str(network["ipv4_address"])] = name
    return fixed


def _health_argv(service: str, test: list[str] | str | None) -> list[str] | None:
    if test is None:
        return None
    if isinstance(test, str) or test[0] != "CMD" or test[1] != "voxplane":
        raise InvalidArgument.of("healthcheck", f"{service}: only [\"CMD\", \"voxplane\", ...] checks run locally, "
                                 f"got {test!r}")
    return [str(arg) for arg in test[2:]]


class _Mapping:
    """How one process's command and environment read here (the module's docstring says the rules)."""

    def __init__(self, own: Process, processes: list[Process], fixed: dict[str, str], hosts: set[str]):
        self.own = own
        self.replicas = {name: [p for p in processes if p.service == name] for name in {p.service for p in processes}}
        self.fixed = fixed
        self.hosts = hosts | set(fixed)

    def _addresses(self, host: str, port: int) -> str | None:
        if host in (LOOPBACK, "localhost", ANY_ADDRESS):
            replicas = [self.own]
        elif (service := self.fixed.get(host, host)) in self.replicas:
            replicas = self.replicas[service]
        else:
            return None
        if port not in replicas[0].ports:
            raise InvalidArgument.of("compose", f"{self.own.name}: {host}:{port} is not a port {host} declares "
                                     "(its command's --port, ports or expose)")
        return ",".join(f"{LOOPBACK}:{replica.ports[port]}" for replica in replicas)

    def value(self, text: str) -> str:
        if text in self.fixed or text == ANY_ADDRESS:
            return LOOPBACK
        if text.isdigit() and int(text) in self.own.ports:
            return str(self.own.ports[int(text)])

        def address(found: re.Match[str]) -> str:
            return self._addresses(found.group(2), int(found.group(3))) or found.group(0)

        mapped = _ADDRESS.sub(address, text)
        left = [host for host, _ in re.findall(r"([A-Za-z0-9_.-]+):(\d+)", mapped) if host in self.hosts]
        if left:
            raise InvalidArgument.of("compose", f"{self.own.name}: {text!r} names {left[0]}, which does not run "
                                     "here (only services built from the Dockerfile do, and PostgreSQL is "
                                     "VOXPLANE_DATABASE_URL)")
        return mapped


def _in_start_order(processes: list[Process]) -> list[Process]:
    services = list(dict.fromkeys(process.service for process in processes))
    order: list[str] = []

    def visit(service: str, path: tuple[str, ...]) -> None:
        if service in order or service not in services:
            return
        if service in path:
            raise InvalidArgument.of("depends_on", f"a cycle: {' -> '.join((*path, service))}")
        for dependency in next(p for p in processes if p.service == service).depends_on:
            visit(dependency, (*path, service))
        order.append(service)

    for service in services:
        visit(service, ())
    return sorted(processes, key=lambda process: order.index(process.service))


def ensure_database(url: str) -> None:
    """Creates the PostgreSQL database of `url` when it is missing (the server's own `postgres` database
    is asked); anything else is refused: replicas need PostgreSQL."""
    parsed = make_url(normalise_url(url))
    if not parsed.drivername.startswith("postgresql"):
        raise InvalidArgument.of("database_url", f"replicas share PostgreSQL; got {parsed.drivername} ({url})")
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                            {"name": parsed.database}).first() is None:
                conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    except OperationalError as error:
        raise FailedPrecondition(f"PostgreSQL at {parsed.render_as_string()} cannot be reached: "
                                 f"{str(error.orig).strip()}") from error
    finally:
        admin.dispose()


def voxplane_command() -> list[str]:
    """The `voxplane` of this environment (the image's ENTRYPOINT)."""
    beside = Path(sys.executable).parent / "voxplane"
    found = str(beside) if beside.exists() else shutil.which("voxplane")
    return [found] if found else [sys.executable, "-m", "voxplane.services.cli"]


class Cluster:
    """Runs the planned processes in the foreground, each line they print prefixed with their name, until
    SIGINT or SIGTERM (or until one stops by itself, a failure), then stops them, dependents first."""

    def __init__(self, processes: list[Process], data_dir: Path, base_env: dict[str, str],
                 check: Callable[[list[str]], bool], out: TextIO = sys.stdout):
        """`check` runs a health check's `voxplane` command line (after `voxplane`): passed or not."""
        self.processes = processes
        self.check = check
        self.data_dir = data_dir
        # The caller's environment without its VOXPLANE_* settings: the compose file's are the ones that count.
        self.base_env = {name: value for name, value in base_env.items() if not name.startswith("VOXPLANE_")}
        self.out = out
        self.width = max((len(process.name) for process in processes), default=7)
        self.stopping = threading.Event()
        self._printing = threading.Lock()

    def say(self, line: str, name: str = "cluster") -> None:
        with self._printing:
            self.out.write(f"{name:<{self.width}} | {line}\n")
            self.out.flush()

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())
        started: list[Process] = []
        try:
            for _, group in itertools.groupby(self.processes, key=lambda process: process.service):
                replicas = list(group)
                if not self._await_dependencies(replicas[0], started):
                    return 0 if self.stopping.is_set() else 1
                for process in replicas:
                    self._start(process)
                    started.append(process)
            if not all(self._healthy(process) for process in started if process.health is not None):
                return 0 if self.stopping.is_set() else 1
            self.say("ready: " + " ".join(f"{p.name}={LOOPBACK}:{port}" for p in started
                                          if (port := _option(p.args, "--port"))))
            return self._watch(started)
        finally:
            self._stop(started)

    def _start(self, process: Process) -> None:
        data = self.data_dir / process.name
        data.mkdir(parents=True, exist_ok=True)
        env = {**self.base_env, "VOXPLANE_DATA_DIR": str(data), **process.env}
        process.popen = subprocess.Popen([*voxplane_command(), *process.args], env=env, text=True,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # Ctrl-C reaches the cluster, which stops them in order
        process.relay = threading.Thread(target=self._relay, args=(process,), daemon=True)
        process.relay.start()
        self.say(f"started {process.name}: voxplane {' '.join(process.args)} (pid {process.popen.pid})")

    def _relay(self, process: Process) -> None:
        assert process.popen is not None and process.popen.stdout is not None
        for line in process.popen.stdout:
            self.say(line.rstrip("\n"), process.name)

    def _await_dependencies(self, process: Process, started: list[Process]) -> bool:
        for service, condition in process.depends_on.items():
            ours = [p for p in started if p.service == service]
            if not ours:
                continue  # not run here: PostgreSQL, ready before the cluster starts (or skipped)
            if condition == "service_completed_successfully":
                if not all(self._completed(p) for p in ours):
                    return False
            elif condition == "service_healthy" and not all(self._healthy(p) for p in ours):
                return False
        return True

    def _until(self, done: Callable[[], bool], process: Process, what: str) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while not self.stopping.is_set():
            if done():
                return True
            if time.monotonic() > deadline:
                self.say(f"{process.name} is not {what} after {START_TIMEOUT} s")
                return False
            self.stopping.wait(HEALTH_POLL)
        return False

    def _completed(self, process: Process) -> bool:
        assert process.popen is not None
        if not self._until(lambda: process.popen.poll() is not None, process, "done"):  # type: ignore[union-attr]
            return False
        if process.popen.returncode != 0:
            self.say(f"{process.name} failed (exit status {process.popen.returncode})")
            return False
        return True

    def _healthy(self, process: Process) -> bool:
        assert process.popen is not None and process.health is not None
        health = process.health

        def check() -> bool:
            if process.popen.poll() is not None:  # type: ignore[union-attr]
                raise _Stopped(process)
            return self.check(health)

        try:
            return self._until(check, process, "healthy")
        except _Stopped:
            self.say(f"{process.name} stopped before it was healthy (exit status {process.popen.returncode})")
            return False

    def _watch(self, started: list[Process]) -> int:
        running = [p for p in started if p.popen is not None and p.popen.poll() is None]
        while not self.stopping.wait(HEALTH_POLL):
            for process in running:
                assert process.popen is not None
                if process.popen.poll() is not None:
                    self.say(f"{process.name} stopped by itself (exit status {process.popen.returncode}): stopping")
                    return 1
        return 0

    def _stop(self, started: list[Process]) -> None:
        for process in reversed(started):  # dependents first: Calls drains before Numbers goes
            if process.popen is None or process.popen.poll() is not None:
                continue
            process.popen.terminate()
            try:
                process.popen.wait(timeout=process.stop_grace)
            except subprocess.TimeoutExpired:
                self.say(f"{process.name} did not stop within {process.stop_grace:g} s: killed")
                process.popen.kill()
                process.popen.wait()
        for process in started:  # their last lines before ours
            if process.relay is not None:
                process.relay.join(timeout=5)  # a grandchild left holding the pipe is not waited for
        self.say("stopped")


class _Stopped(Exception):
    def __init__(self, process: Process):
        super().__init__(process.name)
