"""`voxplane serve --workers N`: processes sharing one port on PostgreSQL, and migrations that replicas
started together run safely. Real subprocesses; the PostgreSQL ones need VOXPLANE_TEST_DATABASE_URL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from voxplane import Numbers

from .conftest import postgres_database
from .test_cli import VOXPLANE, cli

needs_postgres = pytest.mark.skipif(not os.environ.get("VOXPLANE_TEST_DATABASE_URL"),
                                    reason="--workers needs PostgreSQL: set VOXPLANE_TEST_DATABASE_URL")


@pytest.fixture
def pg_env(tmp_path) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    with postgres_database() as database:
        yield {**os.environ, "VOXPLANE_DATABASE_URL": database.url, "VOXPLANE_DATA_DIR": str(tmp_path / "data"),
               "VOXPLANE_SHUTDOWN_GRACE": "5"}


class Workers:
    """`voxplane serve <service> --workers N --port 0` in the background, its log lines read as they come."""

    def __init__(self, env: dict[str, str], service: str, count: int):
        self.process = subprocess.Popen([VOXPLANE, "serve", service, "--workers", str(count), "--port", "0"],
                                        env=env, stderr=subprocess.PIPE, text=True)
        self.lines: list[dict] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(lambda: len(self.serving()) >= count)
        self.address = self.serving()[0]["address"]

    def _read(self) -> None:
        for line in self.process.stderr:  # type: ignore[union-attr]
            with self._changed:
                self.lines.append(json.loads(line))
                self._changed.notify_all()

    def serving(self) -> list[dict]:
        return [line for line in self.lines if line["msg"] == "serving"]

    def wait_for(self, condition, timeout: float = 30):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (found := condition()):
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise AssertionError(f"not seen in the log: {self.lines}")
                self._changed.wait(left)
        return found

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def test_workers_on_sqlite_are_refused_with_the_reason(tmp_path):
    env = {**os.environ, "VOXPLANE_DATA_DIR": str(tmp_path / "data")}
    env.pop("VOXPLANE_DATABASE_URL", None)
    cli(env, "migrate")
    done = subprocess.run([VOXPLANE, "serve", "numbers", "--workers", "2", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "--workers needs PostgreSQL" in done.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rpc_count(metrics_port: int, method: str) -> float:
    """voxplane_rpc_requests_total of `method`, code OK, as the one /metrics endpoint sums it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as answer:
        families = text_string_to_metric_families(answer.read().decode())
    return sum(sample.value for family in families for sample in family.samples
               if sample.name == "voxplane_rpc_requests_total" and sample.labels.get("method") == method
               and sample.labels.get("code") == "OK")


@needs_postgres
def test_workers_share_one_port_and_stop_together(pg_env):
    cli(pg_env, "workspaces", "create", "acme")
    key = cli(pg_env, "keys", "create", "--workspace", "acme", "--role", "member").stdout.strip()
    metrics_port = free_port()
    served = Workers({**pg_env, "VOXPLANE_METRICS_PORT": str(metrics_port)}, "numbers", 2)
    try:
        assert {line["worker"] for line in served.serving()} == {0, 1}
        assert len({line["address"] for line in served.serving()}) == 1  # one port
        made = []
        for i in range(24):  # a connection each: the kernel spreads them over the workers' listeners
            with Numbers(endpoint=served.address, api_key=key) as numbers:
                made.append(numbers.create_number(provider_ref="t", e164_number=f"+1415555{i:04d}").ref)
        with Numbers(endpoint=served.address, api_key=key) as numbers:
            assert {n.ref for n in numbers.iter_numbers(page_size=10)} == set(made)  # whoever made them
        answered = served.wait_for(lambda: {line["worker"] for line in served.lines
                                            if line["msg"] == "rpc" and line["method"].endswith("/CreateNumber")})
        assert answered == {0, 1}
        assert rpc_count(metrics_port, "CreateNumber") == 24  # both workers' counts, at worker 0's endpoint
    finally:
        assert served.stop() == 0
    assert [line["worker"] for line in served.lines if line["msg"] == "stopped"].count(0) == 1


@needs_postgres
def test_a_worker_that_dies_is_forked_again(pg_env):
    served = Workers(pg_env, "numbers", 2)
    try:
        pids = next(line["pids"] for line in served.lines if line["msg"] == "workers started")
        os.kill(pids[0], signal.SIGKILL)
        served.wait_for(lambda: len(served.serving()) == 3)
        assert any(line["msg"].startswith("worker 0 (pid") for line in served.lines)
        assert subprocess.run([VOXPLANE, "health", served.address], env=pg_env, timeout=30).returncode == 0
    finally:
        assert served.stop() == 0


def test_migrations_started_together_on_sqlite_all_succeed(tmp_path):
    env = {**os.environ, "VOXPLANE_DATA_DIR": str(tmp_path / "data")}
    env.pop("VOXPLANE_DATABASE_URL", None)
    assert_migrate_together(env)


@needs_postgres
def test_migrations_started_together_on_postgresql_all_succeed():
    with postgres_database(migrated=False) as database:
        assert_migrate_together({**os.environ, "VOXPLANE_DATABASE_URL": database.url})
        engine = create_engine(database.url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
        engine.dispose()


def assert_migrate_together(env: dict[str, str]) -> None:
    """Four `voxplane migrate` at once on an empty database: every one succeeds, and the schema is whole."""
    runs = [subprocess.Popen([VOXPLANE, "migrate"], env=env, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, outputs
    assert sum("Running upgrade  -> 0001" in output for output in outputs) == 1  # one applied them
    cli(env, "workspaces", "create", "acme")  # the schema works
