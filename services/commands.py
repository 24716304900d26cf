"""What the `voxplane` commands do (cli.py reads the command line): serve, migrate, manage
workspaces, API keys and the inventory, and inject simulated inbound calls. Needs the `server` extra."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import itertools
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.json_format import MessageToJson
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.orm import Session
from tqdm import tqdm

from voxplane import Calls, ClientOptions, VoxplaneError

from . import cluster
from .app import SERVICES, build_server
from .core import config, metrics, ratelimits, tracing, workers, workspaces
from .core import tls as server_tls
from .core.auth import Role
from .core.errors import DomainError, InvalidArgument
from .core.server import check_listenable, serve_until_signalled
from .edge import deployment, running
from .edge.kamailio import Edge, render
from .numbers import inventory
from .persistence.db import Database
from .persistence.migrate import upgrade
from .webhooks import deliveries, signing_keys
from .webhooks import settings as webhook_settings

T = TypeVar("T")
log = logging.getLogger("voxplane.server")
DEV_WORKSPACE = "dev"
DEV_WEBHOOK_ALLOW = "127.0.0.0/8,::1"  # receivers on the developer's machine


def _transaction(fn: Callable[[Session], T]) -> T:
    db = Database(config.database_url(), threads=1)
    try:
        return db.transaction(fn, write=True)
    finally:
        db.close()


def _serve(names: list[str], args: argparse.Namespace, announce: Callable[[int], None] | None = None) -> None:
    """Serves `names` at --host/--port, else at VOXPLANE_HOST/VOXPLANE_PORT; off loopback, over TLS
    unless --plaintext; in --workers processes (PostgreSQL only) sharing the port."""
    settings = config.settings()
    host = settings.host if args.host is None else args.host
    port = settings.port if args.port is None else args.port
    tls = server_tls.server_files(settings)
    server_tls.check_exposure(host, tls, args.plaintext)
    count = getattr(args, "workers", 1)  # `dev` serves in one process
    if count is None:
        count = settings.workers
    if count < 1:
        raise SystemExit(f"voxplane: --workers must be 1 or more, got {count}")

    def serve(worker: int | None) -> None:
        """One server; `worker`: its index among --workers (None: alone). Worker 0 serves the metrics."""
        db = Database(config.database_url(), threads=settings.db_threads, timeout=settings.db_timeout)
        tracing.enable(settings.tracing)  # before the server is made: it instruments grpc.aio.server

        async def main() -> None:
            # grpc.aio objects belong to the loop they are made in.
            server = build_server(names, db, tls, shared_port=worker is not None)
            endpoint = None
            if settings.metrics_port and not worker:
                endpoint = metrics.serve(host, settings.metrics_port, db, server.readings, asyncio.get_running_loop())
                log.info("serving metrics", extra={"fields": {"address": f"http://{host}:{endpoint.port}/metrics"}})
            try:
                await serve_until_signalled(server, host, port, settings.shutdown_grace, announce)
            finally:
                if endpoint is not None:
                    endpoint.close()

        asyncio.run(main())

    if count == 1:
        serve(None)
        return
    if config.database_url().startswith("sqlite"):
        raise SystemExit("voxplane: --workers needs PostgreSQL (VOXPLANE_DATABASE_URL): on SQLite, whose one "
                         "writer serialises every process, one process is the supported deployment")
    check_listenable(host, port)
    reserved, port = workers.reserve_port(host, port)
    with reserved:
        status = workers.run(count, serve, metrics.forget_process)
    raise SystemExit(status)


def cmd_serve(args: argparse.Namespace) -> None:
    _serve([args.service], args)


def cmd_migrate(_args: argparse.Namespace) -> None:
    upgrade(config.database_url())
    print("database is at the latest schema", file=sys.stderr)


def cmd_cluster(args: argparse.Namespace) -> None:
    """The compose file's topology here, on VOXPLANE_DATABASE_URL (else a `voxplane_cluster` database on the
    local PostgreSQL), made if missing; the processes' files under DATA_DIR/cluster."""
    settings = config.settings()
    url = settings.database_url or cluster.DEFAULT_DATABASE_URL
    processes = cluster.plan(cluster.load(Path(args.file)), url, skip=args.skip, free_ports=args.free_ports)
    cluster.ensure_database(url)

    def check(argv: list[str]) -> bool:
        """A health check's command line, run here, quietly: the CLI's parser and code, as in a container,
        without the second or more (many, on a loaded machine) a new interpreter takes to start."""
        command = args.parse(argv)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                globals()[f"cmd_{command.run}"](command)
            except SystemExit as stopped:
                return not stopped.code
        return True

    sys.exit(cluster.Cluster(processes, settings.data_dir / "cluster", dict(os.environ), check).run())


def cmd_workspaces_create(args: argparse.Namespace) -> None:
    print(_transaction(lambda s: workspaces.create_workspace(s, args.name).ref))


def cmd_workspaces_list(_args: argparse.Namespace) -> None:
    for ws in _transaction(workspaces.list_workspaces):
        print(f"{ws.ref}\t{ws.name}\t{ws.create_time:%Y-%m-%d %H:%M:%S}")


# `voxplane workspaces limits` options, by the kind of limit they set.
_LIMIT_OPTIONS = {"requests_per_second": ratelimits.REQUESTS, "calls_per_minute": ratelimits.CALLS,
                  "messages_per_minute": ratelimits.MESSAGES}


def cmd_workspaces_limits(args: argparse.Namespace) -> None:
    """Sets the limits given (an option left out is left as it is), then prints the workspace's limits."""
    given = {option: getattr(args, option) for option in _LIMIT_OPTIONS if hasattr(args, option)}
    if args.reset and given:
        raise InvalidArgument.of("reset", "--reset sets every limit back to its default: give it alone")
    changes = {kind: None if args.reset else given[option] for option, kind in _LIMIT_OPTIONS.items()
               if args.reset or option in given}

    def apply(session: Session, workspace_id: int) -> dict[str, int]:
        ratelimits.set_overrides(session, workspace_id, changes)
        return ratelimits.overrides(session, workspace_id)

    overridden = _in_workspace(args.name, apply)
    for option, kind in _LIMIT_OPTIONS.items():
        value = overridden.get(kind, ratelimits.default_limit(kind))
        print(f"{option}\t{value if value else 'none'}\t{'workspace' if kind in overridden else 'default'}")


def cmd_keys_create(args: argparse.Namespace) -> None:
    role = Role(args.role)
    print(_transaction(lambda s: workspaces.create_key(s, workspaces.find_workspace(s, args.workspace), role)))


def cmd_keys_list(args: argparse.Namespace) -> None:
    def rows(session: Session) -> list[str]:
        return [
            f"{k.key_id}\t{k.workspace.name}\t{k.role}\t{k.create_time:%Y-%m-%d %H:%M:%S}\t"
            + ("revoked" if k.revoke_time else "active")
            for k in workspaces.list_keys(session, args.workspace)
        ]

    print("\n".join(["KEY_ID\tWORKSPACE\tROLE\tCREATED\tSTATE", *_transaction(rows)]))


def cmd_keys_revoke(args: argparse.Namespace) -> None:
    _transaction(lambda s: workspaces.revoke_key(s, args.key_id))
    print(f"revoked {args.key_id}", file=sys.stderr)


def _in_workspace(name: str, fn: Callable[[Session, int], T]) -> T:
    return _transaction(lambda s: fn(s, workspaces.find_workspace(s, name).id))


def cmd_webhooks_secret_create(args: argparse.Namespace) -> None:
    print(_in_workspace(args.workspace, signing_keys.create).secret)


def cmd_webhooks_secret_rotate(args: argparse.Namespace) -> None:
    rotated = _in_workspace(args.workspace, signing_keys.rotate)
    print(rotated.secret)
    print(f"the previous secret signs deliveries too until {rotated.previous_expire_time:%Y-%m-%d %H:%M:%S} UTC",
          file=sys.stderr)


def _print_settings(shown: webhook_settings.Shown) -> None:
    print(f"incoming_url\t{shown.incoming_url}\noutgoing_url\t{shown.outgoing_url}\n"
          f"whitelist\t{','.join(shown.whitelist)}\nkeep_delivery_log\t{'on' if shown.keep_delivery_log else 'off'}")


def cmd_webhooks_settings_get(args: argparse.Namespace) -> None:
    _print_settings(_in_workspace(args.workspace, webhook_settings.get))


def cmd_webhooks_settings_set(args: argparse.Namespace) -> None:
    given = {"incoming_url": args.incoming_url, "outgoing_url": args.outgoing_url, "whitelist": args.whitelist,
             "keep_delivery_log": args.keep_delivery_log}
    changes = webhook_settings.Changes(
        args.incoming_url or "", args.outgoing_url or "",
        [entry for entry in (args.whitelist or "").split(",") if entry.strip()], args.keep_delivery_log == "on",
    )
    fields = [name for name, value in given.items() if value is not None]
    _print_settings(_in_workspace(args.workspace, lambda s, w: webhook_settings.update(s, w, changes, fields)))


def cmd_webhooks_settings_clear(args: argparse.Namespace) -> None:
    _print_settings(_in_workspace(args.workspace, webhook_settings.clear))


def cmd_webhooks_deliveries_list(args: argparse.Namespace) -> None:
    where = deliveries.Filter(status=args.status.upper() if args.status else None)

    def rows(session: Session, workspace_id: int) -> list[str]:
        found, _ = deliveries.list_deliveries(session, workspace_id, where, None, max(1, args.limit))
        return [
            f"{d.ref}\t{d.status}\t{d.attempts}\t{d.event_type}\t{d.resource_ref}\t{d.url}\t{d.last_error}"
            for d in found
        ]

    print("\n".join(["REF\tSTATUS\tATTEMPTS\tEVENT\tRESOURCE\tURL\tLAST_ERROR", *_in_workspace(args.workspace, rows)]))


def cmd_webhooks_deliveries_retry(args: argparse.Namespace) -> None:
    if bool(args.ref) == bool(args.since):
        raise InvalidArgument.of("ref", "give either a delivery's ref or --since, not both nor neither")
    if args.ref:
        _in_workspace(args.workspace, lambda s, w: deliveries.retry_one(s, w, args.ref))
        print(f"delivery {args.ref} is pending again", file=sys.stderr)
        return
    try:
        since = datetime.fromisoformat(args.since)
    except ValueError:
        raise InvalidArgument.of("since", f"{args.since!r} is not an ISO time such as 2026-12-01T09:00:00Z") from None
    since = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
    count = _in_workspace(args.workspace, lambda s, w: deliveries.retry_failed(s, w, since, args.url or ""))
    print(f"failed deliveries pending again: {count}", file=sys.stderr)


class _Unreadable(Exception):
    """The file cannot be read as CSV text: the command stops with one line saying why."""


def _csv_lines(path: Path, counted: Callable[[int], None]) -> Iterator[str]:
    """The file's lines, decoded one at a time so that a byte that is not UTF-8 is named by its line."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        raise _Unreadable(f"{path}: no such file") from None
    except IsADirectoryError:
        raise _Unreadable(f"{path}: is a directory, not a CSV file") from None
    except OSError as error:
        raise _Unreadable(f"{path}: {error.strerror or error}") from None
    with file:
        for number, raw in enumerate(file, start=1):
            counted(len(raw))
            try:
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise _Unreadable(f"{path}: line {number} is not UTF-8 text (save the file as UTF-8)") from None


def cmd_inventory_import(args: argparse.Namespace) -> None:
    """Loads a CSV (columns e164_number, provider_ref) into the inventory: all of it, or none."""
    path = Path(args.file)
    if path.is_dir():
        sys.exit(f"voxplane: {path}: is a directory, not a CSV file")
    if not path.exists():
        sys.exit(f"voxplane: {path}: no such file")
    # Bytes read drive the bar, redrawn once a chunk; disable=None draws it only when stderr is a terminal.
    bar = tqdm(total=path.stat().st_size, desc=path.name, unit="B", unit_scale=True, disable=None)
    read = 0

    def count(size: int) -> None:
        nonlocal read
        read += size

    def load(session: Session) -> tuple[int, int]:
        added = present = done = 0
        reader = csv.DictReader(_csv_lines(path, count))
        missing = {"e164_number", "provider_ref"} - set(reader.fieldnames or ())
        if missing:
            raise _Unreadable(f"{path} lacks the column(s) {', '.join(sorted(missing))}")
        rows = ((reader.line_num, row) for row in reader)
        while chunk := list(itertools.islice(rows, 5000)):
            counts = inventory.import_rows(
                session,
                [(row["e164_number"] or "", row["provider_ref"] or "") for _, row in chunk],
                lambda i, name: f"line {chunk[i][0]}: {name}",  # noqa: B023 - used before the next chunk
            )
            added, present, done = added + counts[0], present + counts[1], done + len(chunk)
            bar.set_postfix_str(f"{done:,} rows", refresh=False)
            bar.update(read - bar.n)
        return added, present

    try:
        added, present = _transaction(load)
    except _Unreadable as error:
        sys.exit(f"voxplane: {error}; nothing was imported")
    except InvalidArgument as error:
        sys.exit("voxplane: nothing was imported:\n" + "\n".join(f"  {v.field}: {v.description}"
                                                                  for v in error.violations))
    finally:
        bar.close()
    print(f"imported {added:,} numbers into the inventory ({present:,} were there already)")


def dev_api_key(session: Session, key_file: Path) -> str:
    """The development key kept in `key_file`, made (with its workspace) if missing or revoked."""
    if key_file.exists():
        key = key_file.read_text().strip()
        if workspaces.key_is_active(session, key):
            return key
    try:
        workspace = workspaces.find_workspace(session, DEV_WORKSPACE)
    except DomainError:
        workspace = workspaces.create_workspace(session, DEV_WORKSPACE)
    key = workspaces.create_key(session, workspace, Role.ADMIN)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    os.chmod(key_file, 0o600)
    return key


def cmd_dev(args: argparse.Namespace) -> None:
    """`make run`: migrate, make sure a development key exists, print how to call, serve everything.
    Webhooks may go to receivers on this machine (loopback), unless VOXPLANE_WEBHOOK_ALLOW says otherwise."""
    if "VOXPLANE_WEBHOOK_ALLOW" not in os.environ:
        os.environ["VOXPLANE_WEBHOOK_ALLOW"] = DEV_WEBHOOK_ALLOW
        config.reload()
    upgrade(config.database_url())
    key_file = config.settings().data_dir / "dev-api-key"
    key = _transaction(lambda s: dev_api_key(s, key_file))
    grpcurl = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"
    settings = config.settings()
    # grpcurl's transport flags: plaintext, or the CA that signed the server's certificate.
    transport = "-plaintext" if not settings.tls_cert else f"-cacert {settings.tls_ca or 'CA.pem'}"
    if settings.tls_client_ca:
        transport += " -cert CLIENT.pem -key CLIENT-KEY.pem"

    def announce(port: int) -> None:
        host = args.host or settings.host
        address = f"{host}:{port}"
        metrics_port = settings.metrics_port
        print(
            f"\nvoxplane is serving {', '.join(SERVICES)} on {address}"
            f" (database: {config.database_url()})\n"
            f"development API key (also in {key_file}):\n  {key}\n"
            f"webhooks may go to: public addresses and {config.settings().webhook_allow or 'no other'}\n"
            f"metrics: {f'http://{host}:{metrics_port}/metrics' if metrics_port else 'off'}\n"
            "try:\n"
            f"  {grpcurl} {transport} {address} list\n"
            f"  {grpcurl} {transport} -H 'authorization: Bearer {key}' "
            f"-d '{{\"page_size\": 5}}' {address} voxplane.numbers.v1.Numbers/ListNumbers\n",
            flush=True,
        )

    _serve(["all"], args, announce)


def cmd_calls_simulate_inbound(args: argparse.Namespace) -> None:
    """SimulateInboundCall on the server at --endpoint: prints the response as JSON (grpcurl's form)."""
    calls = Calls(_client_options(args, args.endpoint), api_key=args.api_key)
    try:
        routed = calls.simulate_inbound_call(source=args.source, destination=args.destination, digits=args.digits)
    except VoxplaneError as error:
        problems = "".join(f"\n  {v.field}: {v.description}" for v in error.field_violations)
        sys.exit(f"voxplane: {error.code.name}: {error.message}{problems}")
    finally:
        calls.close()
    print(MessageToJson(routed, preserving_proto_field_name=True))


def _client_options(args: argparse.Namespace, endpoint: str | None) -> ClientOptions:
    """The client options of a command's --tls/--ca/--cert/--key/--server-name (cli._tls_options)."""
    return ClientOptions(endpoint=endpoint, tls=args.tls, root_certificates=args.ca, certificate_chain=args.cert,
                         private_key=args.key, server_name=args.server_name)


def cmd_health(args: argparse.Namespace) -> None:
    """grpc.health.v1 Check of the server at ADDRESS (of --service, else of the server as a whole): prints
    the status, and exits 0 only when it is SERVING (a container's health check)."""
    try:
        options = _client_options(args, args.address).resolved()
    except (OSError, ValueError) as error:
        sys.exit(f"voxplane: {error}")
    channel = options.open_channel()
    try:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # grpcio-health-checking's stubs do not type its methods
        answer = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
    except grpc.RpcError as error:
        sys.exit(f"voxplane: {args.address}: {error.code().name}: {error.details()}")
    finally:
        channel.close()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(status)
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        sys.exit(1)


def _split(setting: str) -> list[str]:
    return [item.strip() for item in setting.split(",") if item.strip()]


def _edge(args: argparse.Namespace) -> Edge:
    """The edge of --flags, else of VOXPLANE_EDGE_* settings."""
    settings = config.settings()
    return deployment.edge(
        listen=args.listen or settings.edge_listen,
        domains=args.domains or _split(settings.edge_domains),
        gateway=args.gateway or settings.edge_gateway,
        trunks=args.trunks if args.trunks is not None else _split(settings.edge_trunks),
        database_url=args.database_url or config.database_url(),
        max_auth_failures=settings.edge_max_auth_failures,
        auth_failure_window=settings.edge_auth_failure_window,
        flood_requests=settings.edge_flood_requests,
        gateway_workers=args.gateway_workers or settings.edge_gateway_workers,
    )


def cmd_edge_config(args: argparse.Namespace) -> None:
    rendered = render(_edge(args))
    if args.output:
        Path(args.output).write_text(rendered)
    else:
        sys.stdout.write(rendered)


def cmd_edge_run(args: argparse.Namespace) -> None:
    settings = config.settings()
    edge = _edge(args)
    ports = args.rtp_ports or settings.edge_rtp_ports
    low, _, high = ports.partition("-")
    if not (low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535):
        raise InvalidArgument.of("rtp_ports", f"{ports!r} is not a range of UDP ports like '30000-30999'")
    upgrade(edge.database_url)  # Kamailio fails at start without its tables
    media = running.Media(args.rtpengine_ng or settings.rtpengine_ng, int(low), int(high))
    sys.exit(running.run(edge, Path(args.work_dir) if args.work_dir else settings.data_dir / "edge", media))
