"""A Calls process killed outright (`kill -9`): its calls end as soon as a Calls process starts again,
not six heartbeats later. Real `voxplane serve all` subprocesses, on a database of the test's own."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from voxplane import Agents, Calls
from voxplane.calls.v1 import calls_pb2 as pb
from voxplane.services.calls import liveness
from voxplane.services.core import workspaces
from voxplane.services.core.auth import Role
from voxplane.services.persistence.db import Database
from voxplane.services.persistence.migrate import upgrade

from .conftest import backends, postgres_database

VOXPLANE = str(Path(sys.executable).parent / "voxplane")
ANSWERS = "+15005550001"


class Serving:
    """`voxplane serve all` in the background; the address comes from its 'serving' log line."""

    def __init__(self, env: dict[str, str]):
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [VOXPLANE, "serve", "all", "--port", "0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )
        self.logs: list[str] = []
        for line in self.process.stderr:  # type: ignore[union-attr]
            self.logs.append(line)
            if json.loads(line).get("msg") == "serving":
                self.address = json.loads(line)["address"]
                self.ready = time.monotonic()
                return
        raise AssertionError("the server did not start: " + "".join(self.logs))

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)


@contextlib.contextmanager
def own_database(backend: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    """The environment of servers on a migrated database of their own, and a member key of it."""
    env = dict(os.environ, VOXPLANE_SHUTDOWN_GRACE="5", VOXPLANE_LOG_LEVEL="INFO")
    env.pop("VOXPLANE_DATABASE_URL", None)
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / 'voxplane.db'}"
            upgrade(url)
            env["VOXPLANE_DATA_DIR"] = str(tmp_path)
        else:
            url = stack.enter_context(postgres_database()).url
            env["VOXPLANE_DATABASE_URL"] = url
        setup = Database(url, threads=1)
        key = setup.transaction(
            lambda s: workspaces.create_key(s, workspaces.create_workspace(s, "crash"), Role.MEMBER), write=True
        )
        setup.close()
        yield env, key


@pytest.mark.parametrize("backend", backends())
def test_the_calls_of_a_killed_process_end_as_soon_as_calls_starts_again(backend, tmp_path):
    with own_database(backend, tmp_path) as (env, key):
        first = Serving(env)
        try:
            with Agents(endpoint=first.address, api_key=key) as agents:
                agent = agents.create_agent(name="A", username=f"a{secrets.token_hex(4)}",
                                            secret=f"Secret-{secrets.token_hex(8)}",
                                            domains=[f"sip-{secrets.token_hex(4)}.example.com"])
            with Calls(endpoint=first.address, api_key=key) as calls:
                ref = calls.create_call(source=agent.ref, destination=ANSWERS).ref
                deadline = time.monotonic() + 10
                while calls.get_call(ref).status != pb.CALL_STATUS_IN_PROGRESS:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
        finally:
            first.kill()  # no clean stop: the call is still IN_PROGRESS in the database, its runner's beat recent

        second = Serving(env)
        try:
            with Calls(endpoint=second.address, api_key=key) as calls:
                ended = calls.get_call(ref)  # at once: not 30 s (six heartbeats) later
                took = time.monotonic() - second.started
        finally:
            second.stop()
    assert (ended.status, ended.hangup_cause) == (pb.CALL_STATUS_FAILED, pb.HANGUP_CAUSE_SERVICE_RESTART), took
    print(f"the killed process's call ended {took:.2f} s after the new process was started")


@pytest.mark.skipif("postgresql" not in backends(), reason="needs a PostgreSQL server")
def test_a_runner_takes_its_lock_again_once_its_session_is_lost():
    with postgres_database() as database:
        db = Database(database.url, threads=1)
        lock = liveness.RunnerLock(db, "r1")
        key = liveness.lock_key("r1")
        try:
            lock.acquire()
            other = create_engine(database.url, isolation_level="AUTOCOMMIT")  # advisory locks are per database
            with other.connect() as admin:
                def free() -> bool:
                    taken = admin.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
                    if taken:
                        admin.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    return bool(taken)

                assert not free()
                # A restart, for this session: the lock goes with it, until the next beat takes it again.
                admin.execute(text("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                                   "AND ((classid::bigint << 32) | objid::bigint) = (:k)::bigint"), {"k": key})
                time.sleep(0.2)
                assert free()
                # A session lost to a partition that the server still keeps holds it meanwhile: no error.
                admin.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                lock.keep()
                admin.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                assert free()  # nobody holds it for a moment...
                lock.keep()  # ... until the next beat
                assert not free()
            other.dispose()
        finally:
            lock.release()
            db.close()
