"""What callers see when things go wrong between them and the data: retries, lost databases, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.engine import make_url

from voxplane import AbortedError, Numbers, UnavailableError, VoxplaneError
from voxplane.numbers.v1 import numbers_pb2 as pb
from voxplane.numbers.v1 import numbers_pb2_grpc
from voxplane.services.core import workspaces
from voxplane.services.core.auth import Role
from voxplane.services.core.server import TlsFiles
from voxplane.services.persistence.db import Database, DatabaseUnavailable, is_transient
from voxplane.services.persistence.migrate import upgrade

from .conftest import PostgresDatabase, ServerThread, backends, postgres_database
from .tcp_proxy import Proxy

ROOT = Path(__file__).resolve().parent.parent


class FlakyNumbers:
    """A real gRPC server whose Numbers RPCs fail UNAVAILABLE a set number of times first (asking for
    `retry_delay` seconds between tries with a google.rpc.RetryInfo, when given)."""

    def __init__(self, failures: int, retry_delay: float | None = None):
        self.failures = failures
        self.retry_delay = retry_delay
        self.calls: dict[str, int] = {}
        self.request_ids: list[str] = []  # of every CreateNumber attempt, failed or not
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    def _handler(self, name: str, response: object):  # type: ignore[no-untyped-def]
        async def handle(request, context):  # type: ignore[no-untyped-def]
            self.calls[name] = self.calls.get(name, 0) + 1
            if name == "CreateNumber":
                self.request_ids.append(request.request_id)
            if self.calls[name] <= self.failures:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "try again", self._details())
            return response

        request_type = getattr(pb, f"{name}Request")
        return grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=request_type.FromString, response_serializer=lambda m: m.SerializeToString()
        )

    def _details(self) -> tuple[tuple[str, bytes], ...]:
        if self.retry_delay is None:
            return ()
        info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=int(self.retry_delay * 1e9)))
        details = any_pb2.Any()
        details.Pack(info)
        status = status_pb2.Status(code=grpc.StatusCode.UNAVAILABLE.value[0], message="try again", details=[details])
        return (("grpc-status-details-bin", status.SerializeToString()),)

    async def _start(self) -> int:
        self.server = grpc.aio.server()
        number = pb.Number(ref="n1")
        handlers = {name: self._handler(name, number) for name in ("GetNumber", "CreateNumber", "UpdateNumber")}
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("voxplane.numbers.v1.Numbers", handlers)])
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return port

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def flaky():  # type: ignore[no-untyped-def]
    server = FlakyNumbers(failures=2)
    yield server
    server.close()


def test_reads_and_creates_are_retried_on_unavailable(flaky):
    with Numbers(endpoint=f"127.0.0.1:{flaky.port}", api_key="k") as numbers:
        assert numbers.get_number("n1").ref == "n1"
        assert numbers.create_number(e164_number="+14155550100").ref == "n1"  # carries a request_id
    assert flaky.calls == {"GetNumber": 3, "CreateNumber": 3}
    # The client made the request_id once, for all three attempts: else a retried create could create twice.
    assert len(flaky.request_ids) == 3 and len(set(flaky.request_ids)) == 1 and flaky.request_ids[0]


def test_a_callers_request_id_is_sent_unchanged_on_every_attempt(flaky):
    with Numbers(endpoint=f"127.0.0.1:{flaky.port}", api_key="k") as numbers:
        numbers.create_number(e164_number="+14155550100", request_id="caller-1")
    assert flaky.request_ids == ["caller-1"] * 3


def test_updates_are_not_retried(flaky):
    with Numbers(endpoint=f"127.0.0.1:{flaky.port}", api_key="k") as numbers, pytest.raises(UnavailableError):
        numbers.update_number(ref="n1", name="x")
    assert flaky.calls == {"UpdateNumber": 1}


def test_retries_stop_after_max_attempts(flaky):
    with Numbers(endpoint=f"127.0.0.1:{flaky.port}", api_key="k", max_attempts=2) as numbers:
        with pytest.raises(UnavailableError):
            numbers.get_number("n1")
        with pytest.raises(UnavailableError):
            numbers.create_number(e164_number="+14155550100")
    # Each retried once, by the channel (the read) or by the client (the create): never by both.
    assert flaky.calls == {"GetNumber": 2, "CreateNumber": 2}


def test_reads_are_retried_by_the_channel_as_the_published_service_config_says(flaky):
    """A bare grpc channel given protos/voxplane/service_config.json, as any language's client may be."""
    config = (ROOT / "protos" / "voxplane" / "service_config.json").read_text()
    with grpc.insecure_channel(f"127.0.0.1:{flaky.port}", options=[("grpc.service_config", config)]) as channel:
        stub = numbers_pb2_grpc.NumbersStub(channel)
        assert stub.GetNumber(pb.GetNumberRequest(ref="n1"), timeout=5).ref == "n1"
        with pytest.raises(grpc.RpcError) as failed:
            stub.CreateNumber(pb.CreateNumberRequest(request_id="r1"), timeout=5)
    assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
    assert flaky.calls == {"GetNumber": 3, "CreateNumber": 1}  # creates are the SDKs' to retry


def test_a_create_waits_as_long_as_the_servers_retry_info_asks():
    flaky = FlakyNumbers(failures=2, retry_delay=0.3)
    try:
        with Numbers(endpoint=f"127.0.0.1:{flaky.port}", api_key="k") as numbers:
            started = time.monotonic()
            assert numbers.create_number(e164_number="+14155550100").ref == "n1"
            waited = time.monotonic() - started
    finally:
        flaky.close()
    assert flaky.calls == {"CreateNumber": 3} and 0.6 <= waited < 5


def test_a_closed_port_is_unavailable():
    with Numbers(endpoint="127.0.0.1:1", api_key="k", timeout=2) as numbers, pytest.raises(UnavailableError):
        numbers.list_numbers()


needs_postgres = pytest.mark.skipif(
    not os.environ.get("VOXPLANE_TEST_DATABASE_URL"), reason="needs a PostgreSQL server"
)


@contextlib.contextmanager
def numbers_on_own_database() -> Iterator[tuple[PostgresDatabase, Numbers, str]]:
    """A PostgreSQL database of its own, a Numbers server on it, and a client with a member key of it."""
    with postgres_database() as database:
        key = _member_key(database.url)
        served = ServerThread(database.url, ["numbers"])
        try:
            with Numbers(endpoint=served.address, api_key=key, max_attempts=1) as numbers:
                yield database, numbers, served.address
        finally:
            served.stop()


@contextlib.contextmanager
def own_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A migrated database of the backend's for one test alone, which it may break: its URL."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'own.db'}"
        upgrade(url)
        yield url
    else:
        with postgres_database() as database:
            yield database.url


def _member_key(url: str) -> str:
    setup = Database(url, threads=1)
    key = setup.transaction(
        lambda s: workspaces.create_key(s, workspaces.create_workspace(s, "own"), Role.MEMBER), write=True
    )
    setup.close()
    return key


@pytest.mark.parametrize("backend", backends())
def test_a_missing_table_is_internal_and_logged_not_unavailable(backend, tmp_path, caplog):
    """No retry brings a dropped table back: a client must not be told to retry (SQLite reports it as an
    OperationalError, as it does a locked database), and the log says what the database said."""
    with own_database(backend, tmp_path) as url:
        key = _member_key(url)
        served = ServerThread(url, ["numbers"])
        try:
            with Numbers(endpoint=served.address, api_key=key, max_attempts=1) as numbers:
                numbers.list_numbers()
                admin = Database(url, threads=1)
                admin.transaction(lambda s: s.execute(text("DROP TABLE numbers CASCADE" if backend != "sqlite"
                                                           else "DROP TABLE numbers")), write=True)
                admin.close()
                with pytest.raises(VoxplaneError) as caught:
                    numbers.list_numbers()
        finally:
            served.stop()
    assert caught.value.code is grpc.StatusCode.INTERNAL
    assert "numbers" not in caught.value.message  # the database's words stay in our log
    logged = "\n".join(r.getMessage() + (str(r.exc_info[1]) if r.exc_info else "") for r in caplog.records)
    assert "numbers" in logged and ("no such table" in logged or "does not exist" in logged)


@needs_postgres
def test_a_lost_database_is_unavailable_not_internal():
    with numbers_on_own_database() as (database, numbers, address):
        numbers.list_numbers()
        database.drop()
        dropped = time.monotonic()
        with pytest.raises(UnavailableError) as caught:
            numbers.list_numbers()
        assert "database" in caught.value.message
        with grpc.insecure_channel(address) as channel:  # and the services are not ready, the process alive
            assert _health_becomes(health_pb2_grpc.HealthStub(channel), {"": SERVING, NUMBERS: NOT_SERVING}, 5)
        print(f"lost database: Numbers NOT_SERVING {time.monotonic() - dropped:.2f} s after the drop")


@needs_postgres
def test_a_restarted_database_is_used_again_without_an_error(fresh_e164):
    with numbers_on_own_database() as (database, numbers, _):
        e164 = numbers.create_number(provider_ref="t", e164_number=fresh_e164(), aor_link="sip:1@x.local").e164_number
        assert numbers.get_ingress_info(e164).e164_number == e164
        # What a database restart does to every connection the server keeps open.
        with database.admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                         {"name": database.name})
        assert numbers.get_ingress_info(e164).e164_number == e164  # the key and number lookups
        assert numbers.list_numbers().numbers[0].e164_number == e164  # a transaction


def test_concurrent_updates_with_one_etag_one_wins(tenant, fresh_e164):
    with tenant.numbers() as numbers:
        number = numbers.create_number(provider_ref="t", e164_number=fresh_e164(), aor_link="sip:1@sip.local")

    async def race() -> list[object]:
        async with tenant.async_numbers() as client:
            updates = [client.update_number(ref=number.ref, name=f"n{i}", etag=number.etag) for i in range(10)]
            return await asyncio.gather(*updates, return_exceptions=True)

    results = asyncio.run(race())
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, AbortedError) for r in results if isinstance(r, Exception))


def test_tls_end_to_end(tmp_path, database_url, tenant):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    served = ServerThread(database_url, ["numbers"], tls=TlsFiles(cert.read_bytes(), key.read_bytes()))
    try:
        api_key = tenant.keys[Role.READER]
        options = {"endpoint": f"localhost:{served.port}", "api_key": api_key, "tls": True}
        with Numbers(options, root_certificates=cert.read_bytes()) as numbers:
            assert numbers.list_numbers().next_page_token == ""
        with Numbers(endpoint=f"localhost:{served.port}", api_key=api_key, timeout=2) as plaintext:
            with pytest.raises(UnavailableError):
                plaintext.list_numbers()
    finally:
        served.stop()


@contextlib.contextmanager
def numbers_behind_a_proxy() -> Iterator[tuple[Proxy, ServerThread, str]]:
    """A PostgreSQL database of its own, a Numbers server reaching it through a Proxy, and a member key."""
    with postgres_database() as database:
        key = _member_key(database.url)
        url = make_url(database.url)
        proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
        served = ServerThread(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
                              ["numbers"])
        try:
            yield proxy, served, key
        finally:
            proxy.blackhole = False
            served.stop()
            proxy.close()


def _timed(call):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    try:
        call()
    except (VoxplaneError, grpc.RpcError) as error:
        return error, time.monotonic() - started
    return None, time.monotonic() - started


def _code(error: object) -> object:
    return error.code if isinstance(error, VoxplaneError) else error.code() if isinstance(error, grpc.RpcError) else None


@needs_postgres
def test_a_partitioned_database_fails_fast_and_is_used_again_once_healed(fresh_e164):
    """Packets dropped, no reset: requests fail UNAVAILABLE within the database timeout (2 s), not at
    their deadline (a call without one would hang for as long as the partition lasts), and they do not
    tie up the database threads; once the network heals, new connections serve again."""
    with numbers_behind_a_proxy() as (proxy, served, key):
        assert served.server is not None
        with Numbers(endpoint=served.address, api_key=key, max_attempts=1, timeout=60) as numbers:
            made = numbers.create_number(provider_ref="t", e164_number=fresh_e164(), aor_link="sip:1@x.local")
            assert numbers.get_number(made.ref).ref == made.ref
            channel = grpc.insecure_channel(served.address)
            stub = numbers_pb2_grpc.NumbersStub(channel)
            metadata = (("authorization", f"Bearer {key}"),)

            health = health_pb2_grpc.HealthStub(channel)
            assert _health(health) == {"": SERVING, NUMBERS: SERVING}

            proxy.blackhole = True
            partitioned = time.monotonic()
            # A lookup (the key's, and the number's): with a deadline far off, and with none at all.
            error, took = _timed(lambda: numbers.get_number(made.ref))
            assert _code(error) is grpc.StatusCode.UNAVAILABLE and took < 2.5, (error, took)
            print(f"partition: GetNumber UNAVAILABLE in {took:.2f} s")
            error, took = _timed(lambda: stub.GetNumber(pb.GetNumberRequest(ref=made.ref), metadata=metadata))
            assert _code(error) is grpc.StatusCode.UNAVAILABLE and took < 2.5, (error, took)
            error, took = _timed(lambda: numbers.create_number(provider_ref="t", e164_number=fresh_e164(),
                                                               aor_link="sip:1@x.local"))
            assert _code(error) is grpc.StatusCode.UNAVAILABLE and took < 2.5, (error, took)
            print(f"partition: CreateNumber UNAVAILABLE in {took:.2f} s")

            # Units of work on the database threads: three times as many as there are threads, at once (each
            # fails as our timeout or libpq's connect_timeout, both of them UNAVAILABLE to a caller).
            db = served.server.db

            async def units_of_work() -> list[object]:
                one = lambda: db.run_transaction(lambda s: s.execute(text("SELECT 1")).scalar(), write=True)  # noqa: E731
                return await asyncio.gather(*(one() for _ in range(12)), return_exceptions=True)

            started = time.monotonic()
            outcomes = served.run(units_of_work())
            took = time.monotonic() - started
            assert all(isinstance(o, Exception) and is_transient(o) for o in outcomes) and took < 2.5, (outcomes, took)
            print(f"partition: 12 units of work on 4 threads all UNAVAILABLE in {took:.2f} s")

            # Readiness: Numbers is NOT_SERVING; the process itself ('') is alive, so still SERVING.
            assert _health_becomes(health, {"": SERVING, NUMBERS: NOT_SERVING}, within=5)
            print(f"partition: Numbers NOT_SERVING, checked {time.monotonic() - partitioned:.2f} s into the partition")

            proxy.blackhole = False
            healed = time.monotonic()
            while True:  # a client retries UNAVAILABLE; here, by hand
                error, _ = _timed(lambda: numbers.get_number(made.ref))
                if error is None or time.monotonic() - healed > 10:
                    break
                time.sleep(0.2)
            assert error is None
            print(f"partition healed: GetNumber OK again {time.monotonic() - healed:.2f} s later")
            assert numbers.create_number(provider_ref="t", e164_number=fresh_e164(), aor_link="sip:1@x.local").ref
            assert served.run(db.run_transaction(lambda s: s.execute(text("SELECT 1")).scalar(), write=True)) == 1
            assert _health_becomes(health, {"": SERVING, NUMBERS: SERVING}, within=5)
            channel.close()


SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
NUMBERS = "voxplane.numbers.v1.Numbers"


def _health(health: health_pb2_grpc.HealthStub) -> dict[str, int]:
    return {name: health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status for name in ("", NUMBERS)}


def _health_becomes(health: health_pb2_grpc.HealthStub, expected: dict[str, int], within: float) -> bool:
    deadline = time.monotonic() + within
    while _health(health) != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize("backend", backends())
def test_a_unit_of_work_is_timed_on_its_waits_for_the_database_not_on_its_own_code(backend, tmp_path):
    with own_database(backend, tmp_path) as url:
        db = Database(url, threads=2, timeout=0.3)
        try:
            def slow_code(session):  # type: ignore[no-untyped-def]
                session.execute(text("SELECT 1"))
                time.sleep(0.5)  # ours, not the database's: not counted
                return session.execute(text("SELECT 2")).scalar()

            assert asyncio.run(db.run_transaction(slow_code, write=True)) == 2
        finally:
            db.close()


@needs_postgres
def test_a_statement_unanswered_past_the_timeout_frees_its_thread_and_connection():
    with postgres_database() as database:
        db = Database(database.url, threads=1, timeout=0.3)
        try:
            async def go() -> tuple[BaseException | None, float, object]:
                started = time.monotonic()
                try:
                    await db.run_transaction(lambda s: s.execute(text("SELECT pg_sleep(5)")), write=False)
                    error = None
                except DatabaseUnavailable as unavailable:
                    error = unavailable
                took = time.monotonic() - started
                # The one database thread is free at once, on a new connection.
                after = await db.run_transaction(lambda s: s.execute(text("SELECT 1")).scalar(), write=False)
                return error, took, after

            error, took, after = asyncio.run(go())
            assert isinstance(error, DatabaseUnavailable) and took < 1, (error, took)
            assert after == 1
        finally:
            db.close()


@pytest.mark.parametrize("backend", backends())
def test_a_database_error_is_logged_without_the_statements_parameters(backend, tmp_path, caplog):
    from voxplane.services.core.rpc import status_of

    secret = "-".join(("s3cret", "v4lue"))  # not in the traceback's lines of source
    with own_database(backend, tmp_path) as url:
        db = Database(url, threads=1)
        try:
            with pytest.raises(Exception) as caught:  # noqa: PT011 - whichever the driver's
                db.transaction(lambda s: s.execute(text("SELECT * FROM nowhere WHERE x = :v"), {"v": secret}),
                               write=False)
        finally:
            db.close()
    status = status_of(caught.value, "/test/Method")
    assert status.code is grpc.StatusCode.INTERNAL
    logged = "\n".join(caplog.text.splitlines())
    assert "nowhere" in logged and secret not in logged
