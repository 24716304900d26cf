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
    "cryptography", "gsm0338", "pypdf",
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
    serve.add_argument("--host", help="default: VOXPLANE_HOST, else 127.0.0.1")
    serve.add_argument("--port", type=int, help="default: VOXPLANE_PORT, else 50051")
    serve.set_defaults(run="serve")

    dev = commands.add_parser("dev", help="migrate, ensure a development API key, serve all (make run)")
    dev.add_argument("--host", help="default: VOXPLANE_HOST, else 127.0.0.1")
    dev.add_argument("--port", type=int, help="default: VOXPLANE_PORT, else 50051")
    dev.set_defaults(run="dev")

    commands.add_parser("migrate", help="bring the database to the latest schema").set_defaults(run="migrate")

    ws = commands.add_parser("workspaces", help="manage workspaces").add_subparsers(dest="action", required=True)
    create = ws.add_parser("create", help="create a workspace; prints its ref")
    create.add_argument("name")
    create.set_defaults(run="workspaces_create")
    ws.add_parser("list", help="list workspaces").set_defaults(run="workspaces_list")

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
    return top


def main(argv: list[str] | None = None) -> None:
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
