"""Bootstrap: one grpc.aio server hosting some or all services, with health and reflection."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy import inspect, select, text

from ..persistence.db import Database, error_message
from ..persistence.tenancy import DeploymentSecret
from .metrics import Reading
from .paging import PageTokens
from .requests import BATCH_REQUEST_LIMIT, Guarded
from .servicer import Servicer

log = logging.getLogger("voxplane.server")
RUNTIME_CLOSE_SECONDS = 10.0  # what a runtime gets to close after the grace period

# Seconds between two probes of the database, for health (each takes up to VOXPLANE_DB_TIMEOUT more).
PROBE_INTERVAL = 1.0


class Runtime(Protocol):
    """What a service runs besides its RPCs (Calls' network): started before the server serves, with the
    address it serves at, and closed once it has stopped."""

    async def start(self, endpoint: str) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Service:
    """A servicer class and its generated add_XServicer_to_server. The servicer is built with
    (db, page_tokens), and with the Runtime that `runtime(db)` makes when the service has one."""

    servicer: Callable[..., Servicer]
    register: Callable[[Any, grpc.aio.Server], None]
    runtime: Callable[[Database], Runtime] | None = None


def page_tokens(db: Database) -> PageTokens:
    """The deployment's page-token signer; its key is made by the first migration."""
    migrated = inspect(db.reader).has_table(DeploymentSecret.__tablename__)
    key = migrated and db.transaction(
        lambda s: s.scalar(select(DeploymentSecret.value).where(DeploymentSecret.name == "page_token_key")),
        write=False,
    )
    if not key:
        raise SystemExit("The database is not migrated: run `voxplane migrate` first.")
    return PageTokens(key)


class Health(health.aio.HealthServicer):
    """grpc's health service, but a check of a service this server does not host says which it does
    (grpc's own answers NOT_FOUND with no message)."""

    def __init__(self, service_names: Sequence[str]):
        super().__init__()
        self.service_names = service_names  # the server's list, filled as it registers its services

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Any) -> health_pb2.HealthCheckResponse:
        if request.service and request.service not in self.service_names:
            known = ", ".join(self.service_names)
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"This server does not serve {request.service!r}: it serves {known}, and '' (the server as a whole).",
            )
        return await super().Check(request, context)


@dataclass
class TlsFiles:
    """The server's certificate chain and key (PEM); with `client_ca`, clients must present a
    certificate that it signed (mutual TLS)."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None


class Server:
    """Some services on one port over one database, with health and reflection."""

    def __init__(self, services: Sequence[Service], db: Database, *, tls: TlsFiles | None = None,
                 shared_port: bool = False):
        self.db = db
        self.tls = tls
        # A port of its own, unless it is one of `serve --workers` (core/workers.py): then SO_REUSEPORT,
        # which otherwise would let a second server on the port take half its connections unnoticed.
        self.shared_port = shared_port
        # The largest request an RPC takes (a batch's, see core.requests); grpcio's default is 4 MB.
        self.grpc = grpc.aio.server(
            options=[("grpc.so_reuseport", int(shared_port)), ("grpc.max_receive_message_length", BATCH_REQUEST_LIMIT)]
        )
        self.service_names: list[str] = []
        self.health = Health(self.service_names)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        tokens = page_tokens(db)
        self.runtimes: list[Runtime] = []
        self.readings: list[Reading] = []  # the services' gauges read from the database, for /metrics
        self._probing: asyncio.Task[None] | None = None
        for service in services:
            if service.runtime is None:
                servicer = service.servicer(db, tokens)
            else:
                runtime = service.runtime(db)
                self.runtimes.append(runtime)
                servicer = service.servicer(db, tokens, runtime)
            service.register(servicer, Guarded(self.grpc))  # type: ignore[arg-type]  # what register uses of it
            self.service_names.append(servicer.service_name)
            self.readings.extend(servicer.metrics())
        reflection.enable_server_reflection(
            [*self.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.grpc,
        )

    async def start(self, host: str, port: int) -> int:
        """Starts serving; returns the bound port (useful with port 0). An address it cannot listen on
        stops the process with one line naming it (SystemExit)."""
        address = f"{host}:{port}"
        if not self.shared_port:  # a worker's port was checked and reserved by the parent
            check_listenable(host, port)
        try:
            if self.tls:
                credentials = grpc.ssl_server_credentials(
                    [(self.tls.private_key, self.tls.cert_chain)],
                    root_certificates=self.tls.client_ca, require_client_auth=self.tls.client_ca is not None,
                )
                bound = self.grpc.add_secure_port(address, credentials)
            else:
                bound = self.grpc.add_insecure_port(address)
        except RuntimeError:  # grpc says only "Failed to bind"; check_listenable tells why, before grpc tries
            bound = 0
        if not bound:
            raise SystemExit(f"voxplane: cannot listen on {address}; choose another with --host/--port")
        reachable = "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host
        for runtime in self.runtimes:  # those that call services this server hosts do so at this address
            await runtime.start(f"{reachable}:{bound}")
        await self.grpc.start()
        for name in ["", *self.service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._probing = asyncio.get_running_loop().create_task(self._probe())
        return bound

    async def _probe(self) -> None:
        """Health as readiness: every service is NOT_SERVING while the database does not answer (a load
        balancer sends its calls elsewhere), SERVING again once it does. The server as a whole ('')
        stays SERVING while the process runs: liveness, so that nothing restarts it for the database's
        outage. The probe takes the path requests take, database threads and timeout included."""
        serving = True
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                await self.db.run_transaction(lambda s: s.execute(text("SELECT 1")).scalar(), write=False)
                answered, why = True, ""
            except Exception as error:  # noqa: BLE001 - whatever it is, the database cannot serve
                answered, why = False, error_message(error)
            if answered == serving:
                continue
            serving = answered
            if serving:
                log.warning("the database answers again: the services are SERVING")
            else:
                log.warning("the database does not answer (%s): the services are NOT_SERVING", why)
            status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in self.service_names:
                await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Reports NOT_SERVING, lets in-flight calls finish for up to `grace` seconds, then closes."""
        if self._probing is not None:
            self._probing.cancel()
            await asyncio.gather(self._probing, return_exceptions=True)
        await self.health.enter_graceful_shutdown()
        await self.grpc.stop(grace)
        for runtime in self.runtimes:
            # Bounded: a runtime that cannot finish closing must not keep the process from exiting.
            try:
                await asyncio.wait_for(runtime.close(), timeout=grace + RUNTIME_CLOSE_SECONDS)
            except TimeoutError:
                log.error("a runtime did not close in time; stopping without it",
                          extra={"fields": {"runtime": type(runtime).__name__}})
        await self.db.close_lookups()
        self.db.close()


def check_listenable(host: str, port: int) -> None:
    """Stops the process with one line when no address `host` names can take `port`: what grpc would
    otherwise report as a C-core log line and a RuntimeError that says neither which address nor why."""
    if port == 0:
        return  # any free port
    address = f"{host}:{port}"
    try:
        resolved = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise SystemExit(f"voxplane: cannot listen on {address}: {host!r} is not a known host ({error.strerror})") from None
    problems: list[OSError] = []
    for family, kind, proto, _, sockaddr in resolved:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc binds
            try:
                probe.bind(sockaddr)
                return  # grpc serves if it can bind any of the addresses
            except OSError as error:
                problems.append(error)
    if any(p.errno == errno.EADDRINUSE for p in problems):
        why = "the address is already in use (is another voxplane, `make run` say, serving there?)"
    elif any(p.errno == errno.EACCES for p in problems):
        why = "permission denied (ports below 1024 need privileges)"
    elif any(p.errno == errno.EADDRNOTAVAIL for p in problems):
        why = f"{host} is not an address of this machine"
    else:
        why = "; ".join(sorted({p.strerror or str(p) for p in problems})) or "no address to listen on"
    raise SystemExit(f"voxplane: cannot listen on {address}: {why}; choose another with --port or VOXPLANE_PORT")


async def serve_until_signalled(
    server: Server, host: str, port: int, grace: float, on_ready: Callable[[int], None] | None = None
) -> int:
    """Serves until SIGTERM or SIGINT, then drains in-flight calls. `on_ready` gets the bound port."""
    bound = await server.start(host, port)
    # What start-up made (modules, ORM metadata, compiled statements) lives as long as the process;
    # frozen, the collector's full passes stop walking it (they took a fifth of a bulk import's CPU).
    gc.freeze()
    if on_ready:
        on_ready(bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("serving", extra={"fields": {"address": f"{host}:{bound}", "services": server.service_names}})
    await stop.wait()
    log.info("draining", extra={"fields": {"grace_seconds": grace}})
    await server.stop(grace)
    log.info("stopped")
    return bound
