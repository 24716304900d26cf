"""/metrics: a real server's endpoint, on an ephemeral port, scraped over HTTP after known traffic and
parsed with prometheus-client's own parser.

The server runs on a fresh database of its own, so that the gauges read from it (live calls, the
outbox) are exact; the counters are the process's, so the tests compare a scrape before with one after.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from voxplane import InvalidArgumentError, NotFoundError, Numbers, UnauthenticatedError
from voxplane.calls.v1 import calls_pb2 as cpb
from voxplane.services.calls import gateway
from voxplane.services.core import metrics, workspaces
from voxplane.services.events import outbox
from voxplane.services.persistence.base import new_ref, utcnow
from voxplane.services.persistence.db import Database
from voxplane.services.webhooks import dispatch

from . import test_cli
from .conftest import ServerThread, backends, direct_access, fresh_database, postgres_database, serving
from .tcp_proxy import Proxy
from .test_calls import new_agent, wait_for
from .test_resilience import needs_postgres
from .webhook_receiver import Receiver

NUMBERS, CALLS = "voxplane.numbers.v1.Numbers", "voxplane.calls.v1.Calls"
S = cpb.CallStatus
env = test_cli.env  # its fixture: a data folder of the test's own
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# A server on a database of its own: these override conftest's for this module (tenant, network… use them).
@pytest.fixture(scope="module", params=backends())
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from fresh_database(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[ServerThread]:
    yield from serving(database_url)


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[Database]:
    yield from direct_access(database_url)


@pytest.fixture(scope="module")
def scrape(server: ServerThread) -> Iterator[Callable[[], Samples]]:
    """Scrapes the server's /metrics (served as `voxplane serve` serves it, on a free port)."""
    assert server.server is not None
    endpoint = metrics.serve("127.0.0.1", 0, server.server.db, server.server.readings, server.loop)
    yield lambda: scraped(f"http://127.0.0.1:{endpoint.port}/metrics")
    endpoint.close()


def scraped(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=30) as answer:
        text = answer.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample `name` with exactly `labels`; 0 if the scrape has none (a series not made yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples `name` whose labels include `labels` (over every other label's values)."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


def eventually(check: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not so after {timeout} s"
        time.sleep(0.05)


def free_port() -> int:
    """A port nothing listens on, for the moment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_rpcs_are_counted_by_service_method_and_code_with_their_latencies(scrape, tenant, fresh_e164):
    before = scrape()
    # Every method of a hosted service shows from the start, at 0 if never called.
    assert (("voxplane_rpc_requests_total", frozenset({"service": NUMBERS, "method": "BatchDeleteNumbers",
                                                       "code": "OK"}.items())) in before)
    with tenant.numbers() as numbers:
        for _ in range(3):
            numbers.create_number(provider_ref="trunk-1", e164_number=fresh_e164())
        for _ in range(2):
            with pytest.raises(NotFoundError):
                numbers.get_number("nope")
        with pytest.raises(InvalidArgumentError):  # refused before the servicer (core.requests): counted too
            numbers.create_number(provider_ref="trunk\x00", e164_number=fresh_e164())

    def added(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # An error's status may reach the caller before the server has counted it: scrape until it has.
    deadline = time.monotonic() + 10
    after = scrape()
    while (added("voxplane_rpc_requests_total", service=NUMBERS, method="GetNumber", code="NOT_FOUND") < 2
           or added("voxplane_rpc_requests_total", service=NUMBERS, method="CreateNumber", code="INVALID_ARGUMENT") < 1):
        assert time.monotonic() < deadline, "the errors were not counted"
        time.sleep(0.05)
        after = scrape()

    assert added("voxplane_rpc_requests_total", service=NUMBERS, method="CreateNumber", code="OK") == 3
    assert added("voxplane_rpc_requests_total", service=NUMBERS, method="GetNumber", code="NOT_FOUND") == 2
    assert added("voxplane_rpc_requests_total", service=NUMBERS, method="GetNumber", code="OK") == 0
    assert added("voxplane_rpc_requests_total", service=NUMBERS, method="CreateNumber", code="INVALID_ARGUMENT") == 1
    assert added("voxplane_rpc_duration_seconds_count", service=NUMBERS, method="CreateNumber") == 4
    assert added("voxplane_rpc_duration_seconds_count", service=NUMBERS, method="GetNumber") == 2
    assert added("voxplane_rpc_duration_seconds_bucket", service=NUMBERS, method="CreateNumber", le="+Inf") == 4
    assert added("voxplane_rpc_duration_seconds_sum", service=NUMBERS, method="CreateNumber") > 0
    # prometheus-client's own process metrics come along.
    assert value(after, "process_cpu_seconds_total") > 0


def test_calls_by_status_webhook_deliveries_the_outbox_and_the_pools(scrape, tenant, webhooks, environment):
    receiver = Receiver()
    try:
        before = scrape()
        assert value(before, "voxplane_calls_live", status="IN_PROGRESS") == 0  # a database of its own
        agent = new_agent(tenant)
        with tenant.calls() as calls:
            answered, stream = calls.create_call(source=agent.ref, destination=gateway.ANSWERS,
                                                 webhook=receiver.url(), track=True)
            queued = calls.create_call(source=agent.ref, destination=gateway.STAYS_QUEUED)
            wait_for(calls, answered.ref, S.CALL_STATUS_IN_PROGRESS)
            live = scrape()
            assert value(live, "voxplane_calls_live", status="IN_PROGRESS") == 1
            assert value(live, "voxplane_calls_live", status="QUEUED") == 1
            assert value(live, "voxplane_calls_live", status="RINGING") == 0
            calls.hangup_call(answered.ref)
            calls.cancel_call(queued.ref)
            for response in stream:  # a server stream is counted too, once it ends
                if response.HasField("event") and response.event.type == cpb.CALL_EVENT_TYPE_HANGUP:
                    break
            stream.cancel()
        # NEW_CALL, RINGING, ANSWER and HANGUP, each delivered once.
        eventually(lambda: len(receiver.of_type("call.hangup")) == 1)
        eventually(lambda: value(scrape(), "voxplane_webhook_deliveries_pending") == 0)
        after = scrape()
    finally:
        receiver.close()

    def added(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert len(receiver.requests) == 4
    assert added("voxplane_webhook_deliveries_total", outcome="delivered") == 4
    assert added("voxplane_webhook_deliveries_total") == 4  # no other outcome
    assert value(after, "voxplane_calls_live", status="IN_PROGRESS") == 0
    assert value(after, "voxplane_calls_live", status="QUEUED") == 0
    assert value(after, "voxplane_webhook_outbox_backlog") == 0
    assert value(after, "voxplane_webhook_outbox_lag_seconds") == 0
    assert value(after, "voxplane_metrics_database_up") == 1
    assert added("voxplane_rpc_requests_total", service=CALLS, method="CreateCall", code="OK") == 2
    eventually(lambda: total(scrape(), "voxplane_rpc_requests_total", service=CALLS, method="WatchCallEvents")
               - total(before, "voxplane_rpc_requests_total", service=CALLS, method="WatchCallEvents") == 1)
    assert value(after, "voxplane_db_pool_capacity", engine="writer") >= 1
    assert ("voxplane_db_pool_checked_out", frozenset({"engine": "writer"}.items())) in after


def test_serve_serves_metrics_only_when_the_setting_names_a_port(env):
    test_cli.cli(env, "migrate")
    port = free_port()
    served = test_cli.Served({**env, "VOXPLANE_METRICS_PORT": str(port)}, "serve", "numbers")
    try:
        [line] = [json.loads(line) for line in served.logs if '"serving metrics"' in line]
        url = f"http://127.0.0.1:{port}/metrics"
        assert line["address"] == url
        with Numbers(endpoint=served.address, api_key="") as numbers, pytest.raises(UnauthenticatedError):
            numbers.list_numbers()
        eventually(lambda: value(scraped(url), "voxplane_rpc_requests_total", service=NUMBERS, method="ListNumbers",
                                 code="UNAUTHENTICATED") == 1)
        samples = scraped(url)
        assert value(samples, "voxplane_rpc_requests_total", service=NUMBERS, method="ListNumbers", code="OK") == 0
        assert not [key for key in samples if dict(key[1]).get("service") == CALLS]  # not hosted here
        assert ("voxplane_metrics_database_up", frozenset()) not in samples  # Numbers reads nothing at a scrape
    finally:
        assert served.stop() == 0
    plain = test_cli.Served(env, "serve", "numbers")  # off by default
    try:
        assert not [line for line in plain.logs if '"serving metrics"' in line]
    finally:
        plain.stop()


def test_in_multiprocess_mode_one_endpoint_counts_every_process(env, tmp_path):
    """What `--workers` will run: processes sharing PROMETHEUS_MULTIPROC_DIR, one of them serving /metrics."""
    test_cli.cli(env, "migrate")
    shared = {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")}
    (tmp_path / "prometheus").mkdir()
    port = free_port()
    serving = test_cli.Served({**shared, "VOXPLANE_METRICS_PORT": str(port)}, "serve", "numbers")
    other = test_cli.Served(shared, "serve", "numbers")
    try:
        for address in (serving.address, other.address, other.address):
            with Numbers(endpoint=address, api_key="") as numbers, pytest.raises(UnauthenticatedError):
                numbers.list_numbers()
        url = f"http://127.0.0.1:{port}/metrics"
        eventually(lambda: value(scraped(url), "voxplane_rpc_requests_total", service=NUMBERS, method="ListNumbers",
                                 code="UNAUTHENTICATED") == 3)
        samples = scraped(url)
        assert value(samples, "voxplane_rpc_duration_seconds_count", service=NUMBERS, method="ListNumbers") == 3
        assert ("voxplane_db_pool_capacity", frozenset({"engine": "writer"}.items())) in samples
    finally:
        assert other.stop() == 0
        assert serving.stop() == 0


def test_tracing_makes_a_span_of_every_rpc(env):
    test_cli.cli(env, "migrate")
    served = test_cli.Served({**env, "VOXPLANE_TRACING": "console", "OTEL_SERVICE_NAME": "numbers-1"},
                             "serve", "numbers")
    try:
        with Numbers(endpoint=served.address, api_key="") as numbers, pytest.raises(UnauthenticatedError):
            numbers.list_numbers()
    finally:
        assert served.stop() == 0  # the spans are flushed on exit
    assert served.process.stdout is not None
    printed = served.process.stdout.read()
    spans = [json.loads(span) for span in re.findall(r"^\{\n.*?^\}$", printed, re.DOTALL | re.MULTILINE)]
    [span] = [s for s in spans if s["name"] == f"/{NUMBERS}/ListNumbers"]
    assert span["resource"]["attributes"]["service.name"] == "numbers-1"
    assert span["kind"] == "SpanKind.SERVER"
    # The code, recorded as the context's abort gave it (a caller's error leaves a server span's status unset).
    assert span["attributes"]["rpc.grpc.status_code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]


@needs_postgres
def test_a_scrape_while_the_database_does_not_answer_ends_within_its_timeout_and_says_so():
    with postgres_database() as database:
        url = make_url(database.url)
        proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
        served = ServerThread(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
                              ["webhooks"])
        assert served.server is not None
        endpoint = metrics.serve("127.0.0.1", 0, served.server.db, served.server.readings, served.loop)
        address = f"http://127.0.0.1:{endpoint.port}/metrics"
        try:
            assert value(scraped(address), "voxplane_metrics_database_up") == 1
            proxy.blackhole = True
            started = time.monotonic()
            samples = scraped(address)
            took = time.monotonic() - started
            assert took < served.server.db.timeout + 2, took
            assert value(samples, "voxplane_metrics_database_up") == 0
            assert ("voxplane_webhook_outbox_backlog", frozenset()) not in samples
            # The counts are still there (made for every method at start; other tests of this process count too).
            assert ("voxplane_rpc_requests_total", frozenset({"service": "voxplane.webhooks.v1.Webhooks",
                    "method": "GetSigningSecret", "code": "OK"}.items())) in samples
            proxy.blackhole = False
            eventually(lambda: value(scraped(address), "voxplane_metrics_database_up") == 1)
        finally:
            proxy.blackhole = False
            endpoint.close()
            served.stop()
            proxy.close()


@pytest.mark.parametrize("backend", backends())
def test_events_no_dispatcher_has_read_show_as_the_outbox_backlog_and_its_age(backend, tmp_path_factory):
    """The Webhooks reading alone, on a database no delivery worker follows (so the backlog stays)."""
    with (contextlib.contextmanager(fresh_database)(backend, tmp_path_factory) as url,
          contextlib.contextmanager(direct_access)(url) as database):
        def store(session):  # type: ignore[no-untyped-def]
            ws = workspaces.create_workspace(session, "outbox-lag")
            return outbox.append(session, [outbox.NewEvent(ws.id, "call", new_ref(), 1, "NEW_CALL", utcnow(),
                                                           "OUTBOUND", None, {})])

        database.transaction(store, write=True)
        time.sleep(0.2)
        gauges = {metric.name: metric.samples[0].value
                  for metric in database.transaction(dispatch.outbox_lag, write=False)}
        assert gauges["voxplane_webhook_outbox_backlog"] == 1
        assert 0.2 <= gauges["voxplane_webhook_outbox_lag_seconds"] < 30
        assert gauges["voxplane_webhook_deliveries_pending"] == 0
