"""docker-compose.yml and the Dockerfile against the code they run: every command is one the CLI parses, every
VOXPLANE_* variable a setting the servers read, with a value they accept; and `voxplane cluster` (make
cluster), the same file as local processes, run for real on PostgreSQL: every service healthy, a client
through both Numbers replicas, then a clean stop. (Docker itself is not on this machine: the image is not
built here.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from voxplane import Numbers
from voxplane._client import target
from voxplane.services import cluster
from voxplane.services.app import SERVICES
from voxplane.services.cli import parser
from voxplane.services.core import config
from voxplane.services.core.errors import InvalidArgument
from voxplane.services.persistence.db import normalise_url

from .sip_peers import missing_peers
from .test_cli import VOXPLANE, cli

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE = cluster.load(COMPOSE_FILE)
# The services built from the Dockerfile: the `voxplane` command with the compose file's arguments.
VOXPLANE_SERVICES = {name: service for name, service in COMPOSE["services"].items() if "build" in service}
SETTINGS = {f"VOXPLANE_{name.upper()}" for name in config.Settings.model_fields}


def dockerfile_commands() -> list[list[str]]:
    """The `voxplane` command lines of the Dockerfile: its CMDs, and its HEALTHCHECK's (after the ENTRYPOINT)."""
    found = [json.loads(line) for line in re.findall(r"CMD (\[.*\])", (ROOT / "Dockerfile").read_text())]
    return [argv[1:] if argv[0] == "voxplane" else argv for argv in found]


def commands() -> Iterator[tuple[str, list[str]]]:
    for name, service in VOXPLANE_SERVICES.items():
        yield name, [str(arg) for arg in service["command"]]
        check = service.get("healthcheck") or {}
        if not check.get("disable"):
            assert check["test"][:2] == ["CMD", "voxplane"], name
            yield f"{name} (healthcheck)", check["test"][2:]
    for argv in dockerfile_commands():
        yield "Dockerfile", argv


@pytest.mark.parametrize(("where", "argv"), list(commands()), ids=lambda value: str(value))
def test_every_command_of_the_compose_file_and_dockerfile_is_one_the_cli_parses(where, argv):
    try:
        parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `voxplane {' '.join(argv)}` is not a command the CLI takes (its error above)")


def test_every_variable_the_compose_file_sets_is_a_setting_with_a_value_the_servers_accept(monkeypatch):
    dockerfile_env = set(re.findall(r"\b(VOXPLANE_[A-Z_]+)=", (ROOT / "Dockerfile").read_text()))
    assert dockerfile_env and dockerfile_env <= SETTINGS, dockerfile_env - SETTINGS
    for name, service in VOXPLANE_SERVICES.items():
        env = cluster._environment(service)
        unknown = set(env) - SETTINGS
        assert not unknown, f"{name}: {sorted(unknown)} are not settings (services/core/config.py)"
        for variable in SETTINGS:
            monkeypatch.delenv(variable, raising=False)
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        config.Settings()  # a value of the wrong type or out of its choices raises, naming it


def test_each_service_has_a_container_of_its_own_and_numbers_two_replicas_reached_round_robin():
    served = {str(service["command"][1]): name for name, service in VOXPLANE_SERVICES.items()
              if service["command"][0] == "serve"}
    assert set(served) == set(SERVICES)
    assert VOXPLANE_SERVICES["numbers"]["deploy"]["replicas"] == 2
    for name in ("calls", "messaging"):
        endpoint = cluster._environment(VOXPLANE_SERVICES[name])["VOXPLANE_NUMBERS_ENDPOINT"]
        assert target(endpoint).balanced, f"{name} reaches Numbers at {endpoint}, one replica only"
    assert VOXPLANE_SERVICES["edge"]["command"] == ["edge", "run"]
    assert cluster._environment(VOXPLANE_SERVICES["calls"])["VOXPLANE_CALL_GATEWAY"] == "sip"


def test_the_cluster_reads_the_compose_file_onto_this_machine():
    url = "postgresql://postgres@127.0.0.1:5432/voxplane_cluster"
    processes = {process.name: process for process in cluster.plan(COMPOSE, url)}
    assert list(processes) == ["migrate", "numbers.1", "numbers.2", "agents", "calls", "messaging", "webhooks",
                               "edge"]
    # The compose file's published host ports, one process each: what `docker compose up` publishes.
    grpc = {name: process.args[process.args.index("--port") + 1] for name, process in processes.items()
            if "--port" in process.args}
    assert grpc == {"numbers.1": "50051", "numbers.2": "50052", "agents": "50053", "calls": "50054",
                    "messaging": "50055", "webhooks": "50056"}
    calls = processes["calls"]
    assert calls.env["VOXPLANE_NUMBERS_ENDPOINT"] == "127.0.0.1:50051,127.0.0.1:50052"
    assert calls.env["VOXPLANE_AGENTS_ENDPOINT"] == "127.0.0.1:50053"
    assert calls.env["VOXPLANE_SIP_PROXY"] == processes["edge"].env["VOXPLANE_EDGE_LISTEN"] == "127.0.0.1:5060"
    assert calls.env["VOXPLANE_RTPENGINE_NG"] == processes["edge"].env["VOXPLANE_RTPENGINE_NG"]
    assert processes["edge"].env["VOXPLANE_EDGE_GATEWAY"] == f"127.0.0.1:{calls.env['VOXPLANE_SIP_PORT']}"
    assert calls.health == ["health", "--timeout", "3", "127.0.0.1:50054"]
    for process in processes.values():
        assert process.env["VOXPLANE_DATABASE_URL"] == url
        assert "--host" not in process.args or process.args[process.args.index("--host") + 1] == "127.0.0.1"
    listening = [port for process in processes.values() for port in process.ports.values()]
    assert len(listening) == len(set(listening)), "two processes on one port"

    skipped = cluster.plan(COMPOSE, url, skip=["edge"], free_ports=True)
    assert "edge" not in {process.service for process in skipped}
    assert all(port not in (50051, 5060) for process in skipped for port in process.ports.values())


def test_the_cluster_refuses_a_compose_file_naming_what_it_does_not_run():
    wrong = {**COMPOSE, "services": {**COMPOSE["services"], "agents": {
        **COMPOSE["services"]["agents"], "environment": {"VOXPLANE_NUMBERS_ENDPOINT": "postgres:5432"}}}}
    with pytest.raises(InvalidArgument, match="names postgres, which does not run here"):
        cluster.plan(wrong, "postgresql://postgres@127.0.0.1:5432/x")
    with pytest.raises(InvalidArgument, match="no such service"):
        cluster.plan(COMPOSE, "postgresql://postgres@127.0.0.1:5432/x", skip=["nginx"])


class Running:
    """`voxplane cluster` in the background, its output (every process's lines, prefixed) read as it comes."""

    def __init__(self, env: dict[str, str]):
        self.process = subprocess.Popen(
            [VOXPLANE, "cluster", "--file", str(COMPOSE_FILE), "--free-ports", "--skip", "edge"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if re.match(r"cluster +\| ready: ", line):
                self.ready.set()
        self.ready.set()  # it stopped: nothing more will come

    def addresses(self) -> dict[str, str]:
        line = next(line for line in self.lines if re.match(r"cluster +\| ready: ", line))
        return dict(pair.split("=") for pair in line.split("ready: ")[1].split())

    def logged(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(line.split("| ", 1)[1]) for line in self.lines
                if line.startswith(f"{name} ") and line.split("| ", 1)[1].startswith("{")]

    def pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"\| started .*\(pid (\d+)\)$", "\n".join(self.lines), re.M)]


@pytest.fixture
def cluster_database() -> Iterator[str]:
    """A database name not on the server yet (the cluster makes it), dropped afterwards."""
    admin_url = os.environ.get("VOXPLANE_TEST_DATABASE_URL")
    if not admin_url:
        missing_peers("the cluster runs on PostgreSQL: set VOXPLANE_TEST_DATABASE_URL")
    name = f"voxplane_cluster_{uuid.uuid4().hex[:8]}"
    yield make_url(normalise_url(admin_url)).set(database=name).render_as_string(hide_password=False)
    admin = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_the_cluster_runs_the_compose_topology_healthy_and_balanced(cluster_database, tmp_path):
    """The edge is left out (`--skip edge`): its RTP port range is fixed, and test_edge covers `edge run`."""
    env = {**os.environ, "VOXPLANE_DATABASE_URL": cluster_database, "VOXPLANE_DATA_DIR": str(tmp_path)}
    running = Running(env)
    try:
        running.ready.wait(timeout=600)  # a guard against a hang, not a speed target
        assert running.process.poll() is None, "\n".join(running.lines)
        addresses = running.addresses()
        assert set(addresses) == {"numbers.1", "numbers.2", "agents", "calls", "messaging", "webhooks"}
        for name, address in addresses.items():
            checked = subprocess.run([VOXPLANE, "health", address], capture_output=True, text=True, timeout=60)
            assert (checked.returncode, checked.stdout.strip()) == (0, "SERVING"), (name, checked.stderr)

        cli(env, "workspaces", "create", "acme")
        key = cli(env, "keys", "create", "--workspace", "acme").stdout.strip()
        replicas = [addresses["numbers.1"], addresses["numbers.2"]]
        with Numbers(endpoint=replicas, api_key=key) as balanced:
            made = [balanced.create_number(provider_ref="t", e164_number=f"+1415555{i:04d}") for i in range(6)]
        for address in replicas:  # what either replica made, each reads: one database
            with Numbers(endpoint=address, api_key=key) as one:
                assert [one.get_number(number.ref).e164_number for number in made] == [n.e164_number for n in made]
        for name in ("numbers.1", "numbers.2"):  # round robin: both replicas created some
            assert any(line.get("msg") == "rpc" and line["method"].endswith("/CreateNumber")
                       for line in running.logged(name)), name
    finally:
        running.process.send_signal(signal.SIGINT)
        status = running.process.wait(timeout=120)
        running.reader.join()
    assert status == 0, "\n".join(running.lines[-30:])
    assert re.match(r"cluster +\| stopped$", running.lines[-1])
    for pid in running.pids():  # each process stopped, and was reaped by the cluster
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
