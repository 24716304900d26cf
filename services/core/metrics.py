"""Prometheus metrics (prometheus-client): every RPC's count and latency, counted by the rpc decorator,
and what the services read from the database when /metrics is scraped, served on VOXPLANE_METRICS_PORT.

Counts and latencies are prometheus-client's own Counter and Histogram, so that multiprocess mode needs
no change here: with PROMETHEUS_MULTIPROC_DIR set before prometheus_client is first imported (before
workers fork), each process writes them to files there, and the one endpoint's MultiProcessCollector
sums every process's. What is read at scrape time is the serving process's: the database's counts
(calls by status, the outbox's lag) are the same from any process, the pools are its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from wsgiref.simple_server import WSGIServer

import grpc
from google.protobuf import descriptor_pool
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from ..persistence.db import Database

log = logging.getLogger("voxplane.metrics")

# What a service reads from the database at scrape time (Servicer.metrics), in one read-only transaction.
Reading = Callable[[Session], Iterable[Metric]]

RPC_REQUESTS = Counter(
    "voxplane_rpc_requests", "RPCs answered, by service, method and status code.", ("service", "method", "code")
)
# From a lookup's fraction of a millisecond to a slow unit of work; a stream's is its whole lifetime.
RPC_DURATION = Histogram(
    "voxplane_rpc_duration_seconds", "Seconds from an RPC's arrival to its answer (a stream's: to its end).",
    ("service", "method"), buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


_OK = grpc.StatusCode.OK


class RpcMetrics:
    """The metric children of one method, made once: `labels()` costs more than counting does."""

    __slots__ = ("_service", "_method", "_ok", "_codes", "_duration")

    def __init__(self, service: str, method: str):
        self._service, self._method = service, method
        # Made now, so that a method nobody called yet shows 0 (a rate, not a missing series).
        self._ok = RPC_REQUESTS.labels(service, method, _OK.name)
        self._codes: dict[grpc.StatusCode, Counter] = {}  # the other codes', made at their first use
        self._duration = RPC_DURATION.labels(service, method)

    def observe(self, code: grpc.StatusCode, seconds: float) -> None:
        if code is _OK:  # most calls: no hashing of the enum
            self._ok.inc()
        else:
            counted = self._codes.get(code)
            if counted is None:
                counted = self._codes[code] = RPC_REQUESTS.labels(self._service, self._method, code.name)
            counted.inc()
        self._duration.observe(seconds)


def prepare(service: str) -> dict[str, RpcMetrics]:
    """The metric children of every method of the proto service `service`, by method name."""
    return {method.name: RpcMetrics(service, method.name)
            for method in descriptor_pool.Default().FindServiceByName(service).methods}


class PoolUse(Collector):
    """The database pools' connections, read when scraped."""

    def __init__(self, db: Database):
        self.db = db

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        lent = GaugeMetricFamily("voxplane_db_pool_checked_out", "Database connections in use by units of work, "
                                 "by engine (writer; on SQLite also reader).", labels=["engine"])
        capacity = GaugeMetricFamily("voxplane_db_pool_capacity", "Database connections a pool may open at "
                                     "most, by engine.", labels=["engine"])
        for engine, use in self.db.pool_use().items():
            lent.add_metric([engine], use.checked_out)
            capacity.add_metric([engine], use.capacity)
        yield lent
        yield capacity


class DatabaseReadings(Collector):
    """The services' Readings, run when scraped on the database threads of `loop` (the server's), so
    that a database that does not answer fails the reading within VOXPLANE_DB_TIMEOUT, not the scrape."""

    def __init__(self, db: Database, readings: Sequence[Reading], loop: asyncio.AbstractEventLoop):
        self.db, self.readings, self.loop = db, readings, loop

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not read the database

    def collect(self) -> Iterator[Metric]:
        if not self.readings:  # no hosted service reads any (Numbers, Agents alone)
            return

        def read(session: Session) -> list[Metric]:
            return [metric for reading in self.readings for metric in reading(session)]

        answered = asyncio.run_coroutine_threadsafe(self.db.run_transaction(read, write=False), self.loop)
        try:
            # Bounded by the database's timeout; the margin is for our own code and the loop's turn.
            metrics = answered.result(timeout=self.db.timeout + 5)
        except Exception as error:  # noqa: BLE001 - the scrape goes on without them, and says so
            answered.cancel()
            log.warning("metrics: the database readings failed (%s: %s)", type(error).__name__, error)
            metrics = []
        yield from metrics
        yield GaugeMetricFamily("voxplane_metrics_database_up", "1 if this scrape read the database's gauges "
                                "(calls by status, outbox lag), 0 if the database did not answer.",
                                value=1 if metrics else 0)


class Endpoint:
    """The /metrics HTTP server (prometheus-client's, on a thread of its own)."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread):
        self._httpd, self._thread = httpd, thread
        self.port: int = httpd.server_port

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def forget_process(pid: int) -> None:
    """A worker that ended: its gauges in the multiprocess folder go (its counts stay summed)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        mark_process_dead(pid)


def serve(host: str, port: int, db: Database, readings: Sequence[Reading], loop: asyncio.AbstractEventLoop) -> Endpoint:
    """Serves /metrics at host:port (0: any free port): this process's counts, or with
    PROMETHEUS_MULTIPROC_DIR every process's, with the pools of `db` and the services' readings."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # registers itself
    else:
        registry.register(REGISTRY)  # the counts, and prometheus-client's process and GC metrics
    registry.register(PoolUse(db))
    registry.register(DatabaseReadings(db, readings, loop))
    try:
        httpd, thread = start_http_server(port, addr=host.strip("[]") or "0.0.0.0", registry=registry)
    except OSError as error:
        raise SystemExit(f"voxplane: cannot serve metrics on {host}:{port}: {error.strerror or error}; "
                         "choose another with VOXPLANE_METRICS_PORT") from None
    return Endpoint(httpd, thread)
