"""The `voxplane` command as operators use it: subprocesses on a SQLite file of their own."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from voxplane import Agents, Numbers, UnauthenticatedError

VOXPLANE = str(Path(sys.executable).parent / "voxplane")


@pytest.fixture
def env(tmp_path):  # type: ignore[no-untyped-def]
    environment = dict(os.environ)
    environment.pop("VOXPLANE_DATABASE_URL", None)
    environment.update(VOXPLANE_DATA_DIR=str(tmp_path / "data"), VOXPLANE_SHUTDOWN_GRACE="20")
    return environment


def cli(env, *args: str, check: bool = True) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    done = subprocess.run([VOXPLANE, *args], env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, done.stderr
    return done


class Served:
    """`voxplane serve ...` in the background; the address comes from its 'serving' log line."""

    def __init__(self, env, *args: str):  # type: ignore[no-untyped-def]
        self.process = subprocess.Popen(
            [VOXPLANE, *args, "--port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.logs: list[str] = []
        for line in self.process.stderr:  # type: ignore[union-attr]
            self.logs.append(line)
            entry = json.loads(line)
            if entry["msg"] == "serving":
                self.address = entry["address"]
                break
        else:
            raise AssertionError("server did not start: " + "".join(self.logs))

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.logs += self.process.stderr.readlines()  # type: ignore[union-attr]
        return code


def make_key(env, role: str = "member") -> str:  # type: ignore[no-untyped-def]
    cli(env, "migrate")
    if cli(env, "workspaces", "create", "acme", check=False).returncode:
        pass  # already there
    return cli(env, "keys", "create", "--workspace", "acme", "--role", role).stdout.strip()


def test_workspaces_and_keys_commands(env):
    cli(env, "migrate")
    ref = cli(env, "workspaces", "create", "acme").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{28}", ref)
    again = cli(env, "workspaces", "create", "acme", check=False)
    assert again.returncode != 0 and "already exists" in again.stderr

    created = cli(env, "keys", "create", "--workspace", "acme", "--role", "reader")
    assert re.fullmatch(r"vxp_[0-9a-f]{8}_\S+\n", created.stdout)  # the key alone on stdout
    key_id = created.stdout.split("_")[1]
    listed = cli(env, "keys", "list").stdout
    assert re.search(rf"{key_id}\tacme\treader\t.*\tactive", listed)
    assert created.stdout.strip() not in listed

    cli(env, "keys", "revoke", key_id)
    assert re.search(rf"{key_id}\tacme\treader\t.*\trevoked", cli(env, "keys", "list").stdout)
    missing = cli(env, "keys", "create", "--workspace", "nope", check=False)
    assert missing.returncode != 0 and "No workspace is named 'nope'" in missing.stderr
    assert "acme" in cli(env, "workspaces", "list").stdout


def test_a_service_runs_alone_and_logs_one_json_line_per_rpc(env):
    key = make_key(env)
    served = Served(env, "serve", "numbers")
    try:
        with Numbers(endpoint=served.address, api_key=key) as numbers:
            numbers.create_number(provider_ref="t", e164_number="+14155550100", aor_link="sip:1@sip.local")
        with Agents(endpoint=served.address, api_key=key) as agents, pytest.raises(Exception) as caught:
            agents.list_agents()
        assert caught.value.code.name == "UNIMPLEMENTED"
    finally:
        assert served.stop() == 0
    rpc_lines = [json.loads(line) for line in served.logs if '"msg": "rpc"' in line]
    assert rpc_lines[0]["method"] == "/voxplane.numbers.v1.Numbers/CreateNumber"
    assert rpc_lines[0]["code"] == "OK"
    assert rpc_lines[0]["duration_ms"] > 0
    assert rpc_lines[0]["workspace"]
    assert key not in "".join(served.logs)


def test_secrets_never_reach_the_log(env):
    key = make_key(env)
    served = Served(env, "serve", "all")
    try:
        with Agents(endpoint=served.address, api_key=key) as agents:
            agents.create_agent(username="alice", secret="very-secret-words", domains=["sip.local"])
    finally:
        served.stop()
    logs = "".join(served.logs)
    assert "CreateAgent" in logs
    assert "very-secret-words" not in logs and key not in logs


def test_revoking_with_the_cli_locks_a_running_servers_caller_out(env):
    key = make_key(env)
    served = Served(env, "serve", "all")
    try:
        with Numbers(endpoint=served.address, api_key=key) as numbers:
            numbers.list_numbers()
            cli(env, "keys", "revoke", key.split("_")[1])
            with pytest.raises(UnauthenticatedError):
                numbers.list_numbers()
    finally:
        served.stop()


def test_sigterm_lets_in_flight_calls_finish_then_exits_zero(env, tmp_path):
    key = make_key(env)
    served = Served(env, "serve", "all")
    # Hold SQLite's write lock so a CreateNumber stays in flight inside the server.
    blocker = sqlite3.connect(tmp_path / "data" / "voxplane.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    outcome: dict[str, object] = {}

    def in_flight() -> None:
        with Numbers(endpoint=served.address, api_key=key, timeout=30) as numbers:
            outcome["number"] = numbers.create_number(
                provider_ref="t", e164_number="+14155550101", aor_link="sip:1@sip.local"
            )

    caller = threading.Thread(target=in_flight)
    caller.start()
    time.sleep(1.0)  # the call has reached the server and waits on the lock
    served.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert served.process.poll() is None, "the server must wait for the in-flight call"
    blocker.execute("ROLLBACK")
    blocker.close()
    caller.join(timeout=30)
    assert served.process.wait(timeout=30) == 0
    assert outcome["number"].e164_number == "+14155550101"  # type: ignore[attr-defined]


def test_dev_command_prints_a_working_grpcurl_line_and_keeps_its_key(env, tmp_path):
    def start_dev() -> tuple[subprocess.Popen, list[str]]:
        process = subprocess.Popen(
            [VOXPLANE, "dev", "--port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        lines = []
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line.strip())
            if "ListNumbers" in line:
                return process, lines
        raise AssertionError("no banner")

    process, banner = start_dev()
    try:
        key_file = tmp_path / "data" / "dev-api-key"
        key = key_file.read_text().strip()
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        assert key in banner
        command = next(line for line in banner if "ListNumbers" in line)
        ran = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30)
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout) == {}  # no numbers yet
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0

    process, banner = start_dev()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    assert key in banner  # the same key, printed again


def test_a_setting_of_the_wrong_type_stops_a_command_with_its_name(env):
    done = cli({**env, "VOXPLANE_CALLS_HEARTBEAT": "often", "VOXPLANE_DB_THREADS": "8"}, "migrate", check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("voxplane: bad setting: VOXPLANE_CALLS_HEARTBEAT: ")
    assert "\n" not in done.stderr.rstrip("\n")  # one line, no traceback


def test_serve_listens_where_the_environment_says_when_no_flag_does(env):
    cli(env, "migrate")
    served = Served({**env, "VOXPLANE_HOST": "127.0.0.2"}, "serve", "numbers")
    try:
        assert served.address.startswith("127.0.0.2:")
    finally:
        served.stop()


@pytest.mark.parametrize("what", ["missing", "directory", "not UTF-8"])
def test_inventory_import_of_no_readable_csv_says_why_in_one_line(env, tmp_path, what):
    cli(env, "migrate")
    path = tmp_path / "stock.csv"
    if what == "directory":
        path.mkdir()
    elif what == "not UTF-8":
        path.write_bytes(b"e164_number,provider_ref\n+441224901364,trunk-uk\n+44122490\xff1365,trunk-uk\n")
    done = cli(env, "inventory", "import", str(path), check=False)
    assert done.returncode == 1
    expected = {"missing": "no such file", "directory": "is a directory", "not UTF-8": "line 3 is not UTF-8"}[what]
    assert done.stderr.startswith(f"voxplane: {path}: {expected}"), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [["serve", "all"], ["serve", "numbers"], ["dev"]])
def test_serving_on_a_taken_port_names_the_address_in_one_line(env, command):
    cli(env, "migrate")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli(env, *command, "--host", "127.0.0.1", "--port", str(port), check=False)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if not line.startswith("{")]  # but JSON log lines
    assert lines == [
        f"voxplane: cannot listen on 127.0.0.1:{port}: the address is already in use (is another voxplane, "
        "`make run` say, serving there?); choose another with --port or VOXPLANE_PORT"
    ], done.stderr
