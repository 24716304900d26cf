"""Fixtures: a real database (SQLite, and PostgreSQL when VOXPLANE_TEST_DATABASE_URL is set),
a real server on an ephemeral port, and fresh workspaces with keys for every role."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import phonenumbers
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from voxplane import Agents, AsyncAgents, AsyncCalls, AsyncNumbers, Calls, Messaging, Numbers, Webhooks
from voxplane.services.app import build_server
from voxplane.services.calls.gateway import SimulatedGateway
from voxplane.services.core import config, workspaces
from voxplane.services.core.auth import Role
from voxplane.services.core.server import Server, TlsFiles
from voxplane.services.persistence.db import Database, normalise_url
from voxplane.services.persistence.migrate import upgrade


def backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get("VOXPLANE_TEST_DATABASE_URL") else ["sqlite"]


@pytest.fixture(scope="session", params=backends())
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A freshly migrated database of the backend, for this test worker alone."""
    yield from fresh_database(request.param, tmp_path_factory)


def fresh_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a freshly migrated database of `backend` ("sqlite" or "postgresql"), dropped after."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'voxplane.db'}"
        upgrade(url)
        yield url
        return
    with postgres_database() as database:
        yield database.url


class PostgresDatabase:
    """A database of its own on the PostgreSQL server of VOXPLANE_TEST_DATABASE_URL, migrated unless
    `migrated` is False."""

    def __init__(self, migrated: bool = True) -> None:
        admin_url = normalise_url(os.environ["VOXPLANE_TEST_DATABASE_URL"])
        self.name = f"voxplane_test_{secrets.token_hex(4)}"
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = make_url(admin_url).set(database=self.name).render_as_string(hide_password=False)
        if migrated:
            upgrade(self.url)

    def drop(self) -> None:
        """Drops the database, even with clients connected (as a lost database server would)."""
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


@contextlib.contextmanager
def postgres_database(migrated: bool = True) -> Iterator[PostgresDatabase]:
    """A fresh PostgreSQL database, dropped on exit."""
    database = PostgresDatabase(migrated)
    try:
        yield database
    finally:
        database.drop()
        database.admin.dispose()


class ServerThread:
    """A real grpc.aio server on an ephemeral port, on its own event loop thread."""

    def __init__(self, url: str, names: list[str], tls: TlsFiles | None = None):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Server | None = None

        async def start() -> int:
            self.server = build_server(names, Database(url, threads=4), tls)
            return await self.server.start("127.0.0.1", 0)

        self.port = self.run(start())
        self.address = f"127.0.0.1:{self.port}"

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def stop(self) -> None:
        assert self.server is not None
        self.run(self.server.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def server(database_url: str) -> Iterator[ServerThread]:
    yield from serving(database_url)


def serving(url: str) -> Iterator[ServerThread]:
    """Every service on the database at `url`, stopped after."""
    running = ServerThread(url, ["all"])
    yield running
    running.stop()


@pytest.fixture
def calls_runner(server: ServerThread) -> str:
    """The runner id of the test server's Calls service. A running call a test stores should be its:
    the calls of no live runner are ended (SERVICE_RESTART) at the next heartbeat."""
    assert server.server is not None
    return next(runtime.id for runtime in server.server.runtimes)


class Network:
    """The simulated network behind the test server's Calls service: the orders it was given."""

    def __init__(self, gateway: SimulatedGateway):
        self.gateway = gateway

    def orders_of(self, ref: str) -> list[tuple[str, tuple[object, ...]]]:
        """The (order, args) call `ref` was given, oldest first. The server is shared by the worker's tests,
        hence the filter; list() copies the deque in one step while the server's thread may append to it."""
        return [(order, args) for r, order, args in list(self.gateway.orders) if r == ref]


@pytest.fixture
def network(server: ServerThread) -> Network:
    """The test server's simulated network. Tests reach the gateway through this fixture alone, so that
    where the Calls service keeps it is known here only."""
    assert server.server is not None
    return Network(next(runtime.gateway for runtime in server.server.runtimes))


class Environment:
    """VOXPLANE_* settings changed for one test. The servers of this process read them at once (they
    read `config.settings()`); the environment as it was comes back after the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self._monkeypatch = monkeypatch

    def set(self, **variables: str) -> None:
        for name, value in variables.items():
            self._monkeypatch.setenv(name, value)
        config.reload()


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[Environment]:
    yield Environment(monkeypatch)
    monkeypatch.undo()
    config.reload()


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[Database]:
    """Direct access to the test database, for setting up tenants and checking what was stored."""
    yield from direct_access(database_url)


def direct_access(url: str) -> Iterator[Database]:
    database = Database(url, threads=2)
    yield database
    database.close()


@dataclass
class Tenant:
    """A fresh workspace with one API key per role, and clients bound to them."""

    name: str
    ref: str
    address: str
    keys: dict[Role, str] = field(default_factory=dict)

    def numbers(self, role: Role = Role.MEMBER, **options) -> Numbers:  # type: ignore[no-untyped-def]
        return Numbers(endpoint=self.address, api_key=self.keys[role], **options)

    def agents(self, role: Role = Role.MEMBER, **options) -> Agents:  # type: ignore[no-untyped-def]
        return Agents(endpoint=self.address, api_key=self.keys[role], **options)

    def async_numbers(self, role: Role = Role.MEMBER) -> AsyncNumbers:
        return AsyncNumbers(endpoint=self.address, api_key=self.keys[role])

    def async_agents(self, role: Role = Role.MEMBER) -> AsyncAgents:
        return AsyncAgents(endpoint=self.address, api_key=self.keys[role])

    def calls(self, role: Role = Role.MEMBER, **options) -> Calls:  # type: ignore[no-untyped-def]
        return Calls(endpoint=self.address, api_key=self.keys[role], **options)

    def async_calls(self, role: Role = Role.MEMBER) -> AsyncCalls:
        return AsyncCalls(endpoint=self.address, api_key=self.keys[role])

    def messaging(self, role: Role = Role.MEMBER, **options) -> Messaging:  # type: ignore[no-untyped-def]
        return Messaging(endpoint=self.address, api_key=self.keys[role], **options)


@pytest.fixture
def new_tenant(server: ServerThread, db: Database):  # type: ignore[no-untyped-def]
    """Makes tenants: `new_tenant()` returns a workspace nobody else uses, with a key per role."""

    def make() -> Tenant:
        def setup(session):  # type: ignore[no-untyped-def]
            ws = workspaces.create_workspace(session, f"ws-{secrets.token_hex(6)}")
            return Tenant(ws.name, ws.ref, server.address, {r: workspaces.create_key(session, ws, r) for r in Role})

        return db.transaction(setup, write=True)

    return make


@pytest.fixture
def tenant(new_tenant) -> Tenant:  # type: ignore[no-untyped-def]
    return new_tenant()


@pytest.fixture
def other_tenant(new_tenant) -> Tenant:  # type: ignore[no-untyped-def]
    return new_tenant()


@pytest.fixture
def webhooks(tenant: Tenant, environment: Environment) -> None:
    """The tenant signs its webhooks (a POST needs a signing secret), and the servers may post to 127.0.0.1."""
    environment.set(VOXPLANE_WEBHOOK_ALLOW="127.0.0.0/8")
    with Webhooks(endpoint=tenant.address, api_key=tenant.keys[Role.MEMBER]) as client:
        client.create_signing_secret()


def _valid_numbers() -> Iterator[str]:
    """Distinct valid US numbers, in an order no other test worker shares a database with."""
    for n in itertools.count(2_000_000 + secrets.randbelow(5_000_000)):
        candidate = f"+1415{n:07d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            yield candidate


_numbers = _valid_numbers()
_numbers_lock = threading.Lock()


@pytest.fixture
def fresh_e164() -> Iterator:  # type: ignore[type-arg]
    """`fresh_e164()` returns a valid E.164 number no test has used yet."""

    def take() -> str:
        with _numbers_lock:
            return next(_numbers)

    yield take


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """The fuzz test's figures (tests/test_fuzz.py): requests sent and codes answered, per RPC and backend.
    Read from the reports' properties, so that they come back from xdist's workers too."""
    rows = [
        (report.nodeid, value)
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        if report.when == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == "fuzz"
    ]
    if not rows:
        return
    terminalreporter.section("fuzz: requests per RPC and the codes answered")
    total = 0
    for nodeid, (path, codes) in sorted(rows, key=lambda row: row[1][0]):
        backend = "postgresql" if "postgresql" in nodeid else "sqlite"
        sent = sum(codes.values())
        total += sent
        shown = ", ".join(f"{code} {n}" for code, n in sorted(codes.items(), key=lambda item: -item[1]))
        terminalreporter.write_line(f"{path} [{backend}]: {sent} requests: {shown}")
    terminalreporter.write_line(f"{total} requests in all")
