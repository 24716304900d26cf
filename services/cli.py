"""The `voxplane` command: serve, migrate, and manage workspaces and API keys.

Every command needs the `server` extra (SQLAlchemy, Alembic, ...), which `pip install voxplane` does
not bring: so the modules that use it are imported by the commands, not here, `voxplane --help` works
without it, and a command says what to install instead of failing with an ImportError.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.util
import itertools
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from tqdm import tqdm

from .core import config, logs
from .core.errors import DomainError, InvalidArgument

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .core.server import TlsFiles

T = TypeVar("T")
DEV_WORKSPACE = "dev"
# The import names of pyproject.toml's `server` extra.
SERVER_MODULES = ("sqlalchemy", "alembic", "psycopg", "phonenumbers", "grpc_reflection", "grpc_health")


def missing_server_modules() -> list[str]:
    return [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]


def _transaction(fn: Callable[[Session], T]) -> T:
    from .persistence.db import Database

    db = Database(config.database_url(), threads=1)
    try:
        return db.transaction(fn, write=True)
    finally:
        db.close()


def _tls() -> TlsFiles | None:
    from .core.server import TlsFiles

    cert, key = os.environ.get("VOXPLANE_TLS_CERT"), os.environ.get("VOXPLANE_TLS_KEY")
    if not (cert and key):
        return None
    return TlsFiles(cert_chain=Path(cert).read_bytes(), private_key=Path(key).read_bytes())


def _serve(names: list[str], host: str, port: int, announce: Callable[[int], None] | None = None) -> None:
    from .app import build_server
    from .core.server import serve_until_signalled
    from .persistence.db import Database

    settings = config.ServerSettings()
    db = Database(config.database_url(), threads=settings.db_threads)
    tls = _tls()

    async def main() -> None:
        # grpc.aio objects belong to the loop they are made in.
        server = build_server(names, db, tls)
        await serve_until_signalled(server, host, port, settings.shutdown_grace, announce)

    asyncio.run(main())


def cmd_serve(args: argparse.Namespace) -> None:
    _serve([args.service], args.host, args.port)


def cmd_migrate(_args: argparse.Namespace) -> None:
    from .persistence.migrate import upgrade

    upgrade(config.database_url())
    print("database is at the latest schema", file=sys.stderr)


def cmd_workspaces_create(args: argparse.Namespace) -> None:
    from .core import workspaces

    print(_transaction(lambda s: workspaces.create_workspace(s, args.name).ref))


def cmd_workspaces_list(_args: argparse.Namespace) -> None:
    from .core import workspaces

    for ws in _transaction(workspaces.list_workspaces):
        print(f"{ws.ref}\t{ws.name}\t{ws.create_time:%Y-%m-%d %H:%M:%S}")


def cmd_keys_create(args: argparse.Namespace) -> None:
    from .core import workspaces
    from .core.auth import Role

    role = Role(args.role)
    print(_transaction(lambda s: workspaces.create_key(s, workspaces.find_workspace(s, args.workspace), role)))


def cmd_keys_list(args: argparse.Namespace) -> None:
    from .core import workspaces

    def rows(session: Session) -> list[str]:
        return [
            f"{k.key_id}\t{k.workspace.name}\t{k.role}\t{k.create_time:%Y-%m-%d %H:%M:%S}\t"
            + ("revoked" if k.revoke_time else "active")
            for k in workspaces.list_keys(session, args.workspace)
        ]

    print("\n".join(["KEY_ID\tWORKSPACE\tROLE\tCREATED\tSTATE", *_transaction(rows)]))


def cmd_keys_revoke(args: argparse.Namespace) -> None:
    from .core import workspaces

    _transaction(lambda s: workspaces.revoke_key(s, args.key_id))
    print(f"revoked {args.key_id}", file=sys.stderr)


def cmd_inventory_import(args: argparse.Namespace) -> None:
    """Loads a CSV (columns e164_number, provider_ref) into the inventory: all of it, or none."""
    from .numbers import inventory

    path = Path(args.file)
    # Bytes read drive the bar, redrawn once a chunk; disable=None draws it only when stderr is a terminal.
    bar = tqdm(total=path.stat().st_size, desc=path.name, unit="B", unit_scale=True, disable=None)
    read = 0

    def lines(file: Iterable[str]) -> Iterator[str]:
        nonlocal read
        for line in file:
            read += len(line.encode())
            yield line

    def load(session: Session) -> tuple[int, int]:
        added = present = done = 0
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(lines(file))
            missing = {"e164_number", "provider_ref"} - set(reader.fieldnames or ())
            if missing:
                raise SystemExit(f"voxplane: {path} lacks the column(s) {', '.join(sorted(missing))}")
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
    except InvalidArgument as error:
        sys.exit("voxplane: nothing was imported:\n" + "\n".join(f"  {v.field}: {v.description}"
                                                                  for v in error.violations))
    finally:
        bar.close()
    print(f"imported {added:,} numbers into the inventory ({present:,} were there already)")


def dev_api_key(session: Session, key_file: Path) -> str:
    """The development key kept in `key_file`, made (with its workspace) if missing or revoked."""
    from .core import workspaces
    from .core.auth import Role

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
    """`make run`: migrate, make sure a development key exists, print how to call, serve everything."""
    from .app import SERVICES
    from .persistence.migrate import upgrade

    upgrade(config.database_url())
    key = _transaction(lambda s: dev_api_key(s, config.DATA_DIR / "dev-api-key"))
    grpcurl = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"

    def announce(port: int) -> None:
        address = f"{args.host}:{port}"
        print(
            f"\nvoxplane is serving {', '.join(SERVICES)} on {address}"
            f" (database: {config.database_url()})\n"
            f"development API key (also in {config.DATA_DIR / 'dev-api-key'}):\n  {key}\n"
            "try:\n"
            f"  {grpcurl} -plaintext {address} list\n"
            f"  {grpcurl} -plaintext -H 'authorization: Bearer {key}' "
            f"-d '{{\"page_size\": 5}}' {address} voxplane.numbers.v1.Numbers/ListNumbers\n",
            flush=True,
        )

    _serve(["all"], args.host, args.port, announce)


def parser() -> argparse.ArgumentParser:
    settings = config.ServerSettings()
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
    serve.add_argument("--host", default=settings.host)
    serve.add_argument("--port", type=int, default=settings.port)
    serve.set_defaults(run=cmd_serve)

    dev = commands.add_parser("dev", help="migrate, ensure a development API key, serve all (make run)")
    dev.add_argument("--host", default=settings.host)
    dev.add_argument("--port", type=int, default=settings.port)
    dev.set_defaults(run=cmd_dev)

    commands.add_parser("migrate", help="bring the database to the latest schema").set_defaults(run=cmd_migrate)

    ws = commands.add_parser("workspaces", help="manage workspaces").add_subparsers(dest="action", required=True)
    create = ws.add_parser("create", help="create a workspace; prints its ref")
    create.add_argument("name")
    create.set_defaults(run=cmd_workspaces_create)
    ws.add_parser("list", help="list workspaces").set_defaults(run=cmd_workspaces_list)

    stock = commands.add_parser("inventory", help="manage the number inventory").add_subparsers(
        dest="action", required=True
    )
    load = stock.add_parser("import", help="add numbers from a CSV (e164_number,provider_ref), all or none")
    load.add_argument("file")
    load.set_defaults(run=cmd_inventory_import)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="create a key; prints it, once, alone on stdout")
    create.add_argument("--workspace", required=True, help="workspace name")
    create.add_argument("--role", default=member, choices=roles)
    create.set_defaults(run=cmd_keys_create)
    listing = keys.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--workspace", help="only this workspace's keys")
    listing.set_defaults(run=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key by its id; it stops working at once")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=cmd_keys_revoke)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if missing := missing_server_modules():
        sys.exit(
            f"voxplane: `{args.command}` needs the server extra (missing: {', '.join(missing)}): "
            "pip install 'voxplane[server]'"
        )
    logs.configure(os.environ.get("VOXPLANE_LOG_LEVEL", "INFO"))
    try:
        args.run(args)
    except DomainError as error:
        sys.exit(f"voxplane: {error}")
