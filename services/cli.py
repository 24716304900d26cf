"""The `voxplane` command line: serve, migrate, and manage workspaces, API keys and the inventory.

Every command needs the `server` extra (SQLAlchemy, Alembic, pydantic-settings…), which `pip install
voxplane` does not bring: so this module reads the command line without it (`voxplane --help` works),
and a command says what to install instead of failing with an ImportError. What the commands do is
commands.py's.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys

from .core import logs
from .core.errors import DomainError

# The import names of pyproject.toml's `server` extra.
SERVER_MODULES = (
    "sqlalchemy", "alembic", "psycopg", "phonenumbers", "grpc_reflection", "grpc_health", "pydantic_settings",
    "cryptography", "defusedxml", "httpx", "sniffio", "gsm0338", "pypdf", "sippy", "prometheus_client",
)


@functools.cache  # asked by the parser and again before a command runs
def missing_server_modules() -> list[str]:
    return [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]


def parser() -> argparse.ArgumentParser:
    # The server modules name the services and roles; without them --help still works, unchecked, and
    # main() stops before a command runs.
    services: list[str] | None = None
    roles: list[str] | None = None
    member: str | None = None
    if not missing_server_modules():
        from .app import SERVICES
        from .core.auth import Role

        services, roles, member = ["all", *SERVICES], [r.value for r in Role], Role.MEMBER.value
    top = argparse.ArgumentParser(prog="voxplane", description="voxplane telephony control plane")
    commands = top.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve one service, or all on one port")
    serve.add_argument("service", choices=services)
    serve.set_defaults(run="serve")
    dev = commands.add_parser("dev", help="migrate, ensure a development API key, serve all (make run)")
    dev.set_defaults(run="dev")
    serve.add_argument("--workers", type=int, help="processes serving the port (SO_REUSEPORT; PostgreSQL only); "
                       "default: VOXPLANE_WORKERS, else 1")
    for command in (serve, dev):
        command.add_argument("--host", help="default: VOXPLANE_HOST, else 127.0.0.1")
        command.add_argument("--port", type=int, help="default: VOXPLANE_PORT, else 50051")
        command.add_argument("--plaintext", action="store_true", help="off loopback, serve without TLS (a trusted "
                             "network, a TLS-terminating proxy) instead of refusing to start; logs a WARNING")

    health = commands.add_parser("health", help="check a server's grpc.health.v1 health; exit 0 when SERVING")
    health.add_argument("address", help="host:port of the server")
    health.add_argument("--service", default="", help="a service's full name (voxplane.numbers.v1.Numbers); "
                        "default: the server as a whole")
    health.add_argument("--timeout", type=float, default=5, help="seconds to wait for the answer (default 5)")
    _tls_options(health)
    health.set_defaults(run="health")

    commands.add_parser("migrate", help="bring the database to the latest schema").set_defaults(run="migrate")

    cluster = commands.add_parser("cluster", help="docker-compose.yml's services as local processes on PostgreSQL, "
                                  "in the foreground until Ctrl-C (make cluster)")
    cluster.add_argument("--file", default="docker-compose.yml", help="the compose file (default: docker-compose.yml)")
    cluster.add_argument("--skip", action="append", default=[], metavar="SERVICE",
                         help="a compose service not to run (repeatable), e.g. --skip edge")
    cluster.add_argument("--free-ports", action="store_true",
                         help="a free port for each process instead of the host ports the compose file publishes")
    # The parser itself, for the health checks the cluster runs in-process (commands.py cannot import this module).
    cluster.set_defaults(run="cluster", parse=top.parse_args)

    ws = commands.add_parser("workspaces", help="manage workspaces").add_subparsers(dest="action", required=True)
    create = ws.add_parser("create", help="create a workspace; prints its ref")
    create.add_argument("name")
    create.set_defaults(run="workspaces_create")
    ws.add_parser("list", help="list workspaces").set_defaults(run="workspaces_list")
    limits = ws.add_parser("limits", help="show a workspace's rate limits; with options, set them first (every "
                           "replica applies a change within VOXPLANE_RATE_LIMIT_REFRESH seconds)")
    limits.add_argument("name", help="workspace name")
    for option, what in (("requests-per-second", "requests per second"), ("calls-per-minute", "calls created "
                         "per minute"), ("messages-per-minute", "messages sent per minute")):
        limits.add_argument(f"--{option}", type=_limit_value, metavar="N|default", default=argparse.SUPPRESS,
                            help=f"its limit of {what} (0: none), or `default`: the deployment's")
    limits.add_argument("--reset", action="store_true", help="every limit back to the deployment's default")
    limits.set_defaults(run="workspaces_limits")

    stock = commands.add_parser("inventory", help="manage the number inventory").add_subparsers(
        dest="action", required=True
    )
    load = stock.add_parser("import", help="add numbers from a CSV (e164_number,provider_ref), all or none")
    load.add_argument("file")
    load.set_defaults(run="inventory_import")

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="create a key; prints it, once, alone on stdout")
    create.add_argument("--workspace", required=True, help="workspace name")
    create.add_argument("--role", default=member, choices=roles)
    create.set_defaults(run="keys_create")
    listing = keys.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--workspace", help="only this workspace's keys")
    listing.set_defaults(run="keys_list")
    revoke = keys.add_parser("revoke", help="revoke a key by its id; it stops working at once")
    revoke.add_argument("key_id")
    revoke.set_defaults(run="keys_revoke")

    calls = commands.add_parser("calls", help="calls, on a running server").add_subparsers(dest="action", required=True)
    inbound = calls.add_parser(
        "simulate-inbound", help="have the simulated network report an inbound call (an operator key); prints it as JSON"
    )
    inbound.add_argument("--from", dest="source", required=True, help="the caller: E.164 or a SIP URI")
    inbound.add_argument("--to", dest="destination", required=True, help="the number called, E.164")
    inbound.add_argument("--digits", default="", help="DTMF the caller presses when a webhook's reply gathers some")
    _client_options(inbound)
    inbound.set_defaults(run="calls_simulate_inbound")
    _webhooks_commands(commands)
    _edge_commands(commands)
    return top


def _limit_value(text: str) -> int | None:
    """A limit given on the command line: a count (0: no limit), or `default` (None)."""
    if text == "default":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is neither a count (0: no limit) nor `default`")
    return int(text)


def _edge_commands(commands: argparse._SubParsersAction) -> None:
    edge = commands.add_parser("edge", help="the Kamailio edge proxy in front of voxplane").add_subparsers(
        dest="action", required=True
    )
    config = edge.add_parser("config", help="print the kamailio.cfg of this deployment")
    config.add_argument("--output", help="write it to this file instead")
    config.set_defaults(run="edge_config")
    run = edge.add_parser("run", help="migrate, then run Kamailio (and rtpengine, when installed) in the foreground")
    run.add_argument("--work-dir", help="where the config, pid file and sockets go; default: DATA_DIR/edge")
    run.add_argument("--rtpengine-ng", help="rtpengine's control address; default: VOXPLANE_RTPENGINE_NG, "
                     "else 127.0.0.1:2223")
    run.add_argument("--rtp-ports", help="MIN-MAX, the UDP ports media is relayed on; default: "
                     "VOXPLANE_EDGE_RTP_PORTS, else 30000-30999")
    run.set_defaults(run="edge_run")
    for command in (config, run):
        command.add_argument("--listen", help="IP:port Kamailio listens on (UDP and TCP); default: "
                             "VOXPLANE_EDGE_LISTEN, else 127.0.0.1:5060")
        command.add_argument("--domain", action="append", dest="domains", help="a SIP domain it serves, agents "
                             "register in (repeat for more); default: VOXPLANE_EDGE_DOMAINS, else sip.local")
        command.add_argument("--gateway", help="IP:port of voxplane's SIP gateway, trusted by source address; "
                             "default: VOXPLANE_EDGE_GATEWAY, else 127.0.0.1:5070")
        command.add_argument("--gateway-workers", type=int, help="the gateway's processes (`serve calls --workers "
                             "N`), on the ports from --gateway's on; default: VOXPLANE_EDGE_GATEWAY_WORKERS, else 1")
        command.add_argument("--trunk", action="append", dest="trunks", help="a carrier trunk's IP or network, "
                             "with an optional port, trusted by source address (repeat for more); default: "
                             "VOXPLANE_EDGE_TRUNKS")
        command.add_argument("--database-url", help="default: VOXPLANE_DATABASE_URL, else DATA_DIR/voxplane.db")


def _client_options(command: argparse.ArgumentParser) -> None:
    """Where a command that talks to a running server finds it, and with which key."""
    command.add_argument("--endpoint", help="host:port; default: VOXPLANE_ENDPOINT, else 127.0.0.1:50051")
    command.add_argument("--api-key", help="default: VOXPLANE_API_KEY")
    _tls_options(command)


def _tls_options(command: argparse.ArgumentParser) -> None:
    """How a command that talks to a running server speaks TLS to it: the client options of the SDK."""
    command.add_argument("--tls", action="store_true", default=None,
                         help="use TLS, trusting the system's roots (default: VOXPLANE_TLS; implied by --ca/--cert)")
    command.add_argument("--ca", help="PEM file of the CA that signed the server's certificate (default: VOXPLANE_TLS_CA)")
    command.add_argument("--cert", help="client certificate (PEM), for mutual TLS (default: VOXPLANE_TLS_CLIENT_CERT)")
    command.add_argument("--key", help="the client certificate's key (PEM) (default: VOXPLANE_TLS_CLIENT_KEY)")
    command.add_argument("--server-name", help="the name to verify the server's certificate by, when not the "
                         "address's host (default: VOXPLANE_TLS_SERVER_NAME)")


def _webhooks_commands(commands: argparse._SubParsersAction) -> None:
    hooks = commands.add_parser("webhooks", help="manage a workspace's webhook secret, settings and deliveries")
    groups = hooks.add_subparsers(dest="group", required=True)

    def command(group: argparse._SubParsersAction, name: str, run: str, help: str) -> argparse.ArgumentParser:
        found = group.add_parser(name, help=help)
        found.add_argument("--workspace", required=True, help="workspace name")
        found.set_defaults(run=run)
        return found

    secret = groups.add_parser("secret", help="the signing secret").add_subparsers(dest="action", required=True)
    command(secret, "create", "webhooks_secret_create", "create the signing secret; prints it, once, alone on stdout")
    command(secret, "rotate", "webhooks_secret_rotate",
            "replace it (both are signed with for 24 h); prints the new one, once, alone on stdout")

    settings = groups.add_parser("settings", help="default URLs, whitelist, delivery log").add_subparsers(
        dest="action", required=True
    )
    command(settings, "get", "webhooks_settings_get", "print the settings")
    setting = command(settings, "set", "webhooks_settings_set", "change the settings given (an empty value clears one)")
    setting.add_argument("--incoming-url", help="default URL for the events of inbound calls")
    setting.add_argument("--outgoing-url", help="default URL for the events of outbound calls")
    setting.add_argument("--whitelist", help="comma-separated agent refs and E.164 numbers whose calls use them")
    setting.add_argument("--keep-delivery-log", choices=["on", "off"], help="keep delivered deliveries listed")
    command(settings, "clear", "webhooks_settings_clear", "clear every setting")

    deliveries = groups.add_parser("deliveries", help="list and redeliver").add_subparsers(dest="action", required=True)
    listing = command(deliveries, "list", "webhooks_deliveries_list", "list deliveries, newest first")
    listing.add_argument("--status", choices=["pending", "delivered", "failed"])
    listing.add_argument("--limit", type=int, default=20)
    retry = command(deliveries, "retry", "webhooks_deliveries_retry", "deliver one again, or every failed one since a time")
    retry.add_argument("ref", nargs="?", help="the delivery")
    retry.add_argument("--since", help="instead of a ref: every FAILED delivery created at or after this ISO time")
    retry.add_argument("--url", help="with --since: only those to this URL")


def _share_metrics_of_workers(argv: list[str] | None) -> None:
    """`serve --workers N` with metrics: prometheus-client's multiprocess folder must be set before it is
    first imported, which building the parser does (the services' modules count their RPCs)."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("command", nargs="?")
    early.add_argument("--workers", type=int)
    asked, _ = early.parse_known_args(argv)
    if asked.command == "serve" and not missing_server_modules():  # else main() says what is missing
        from .core import config, workers

        try:
            workers.share_metrics(asked.workers or config.settings().workers)
        except ValueError:
            pass  # a bad setting: the command stops on it below, naming it


def main(argv: list[str] | None = None) -> None:
    _share_metrics_of_workers(argv)
    args = parser().parse_args(argv)
    if missing := missing_server_modules():
        sys.exit(
            f"voxplane: `{args.command}` needs the server extra (missing: {', '.join(missing)}): "
            "pip install 'voxplane[server]'"
        )
    from pydantic import ValidationError

    from . import commands
    from .core import config

    try:
        logs.configure(config.settings().log_level)
        getattr(commands, f"cmd_{args.run}")(args)
    except ValidationError as error:  # a VOXPLANE_* setting of the wrong type
        problems = "; ".join(f"VOXPLANE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        sys.exit(f"voxplane: bad setting: {problems}")
    except DomainError as error:
        sys.exit(f"voxplane: {error}")
