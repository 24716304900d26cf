"""The contract and the package surface: fresh generated code, commented protos, schema in sync."""

from __future__ import annotations

import filecmp
import sys
import tomllib
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from google.protobuf import descriptor_pb2

import voxplane
from voxplane.services.persistence.db import one_shot_engine
from voxplane.services.schema import metadata

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "protos"))
import generate  # noqa: E402  (protos/generate.py, what `make proto` runs)


def _stale(produced_root: Path, committed_root: Path) -> list[str]:
    """Files of a fresh generation that differ from, or are missing in, the committed copy."""
    produced = sorted(p.relative_to(produced_root) for p in produced_root.rglob("*") if p.is_file())
    assert produced, "nothing was generated"
    return [
        str(p)
        for p in produced
        if not (committed_root / p).is_file() or not filecmp.cmp(produced_root / p, committed_root / p, shallow=False)
    ]


def test_committed_generated_code_is_what_make_proto_produces(tmp_path):
    generate.generate(tmp_path)
    stale = _stale(tmp_path, ROOT / "clients" / "python")
    assert not stale, f"run `make proto` and commit: {stale}"


def test_committed_node_code_is_what_make_proto_produces(tmp_path):
    """buf generate (ts-proto) into a temporary clients/node: the committed src/gen must be exactly that."""
    generate.generate_node(tmp_path)
    fresh, committed = generate.node_generated(tmp_path), generate.node_generated(generate.NODE)
    stale = _stale(fresh, committed)
    left_over = sorted(
        str(p.relative_to(committed))
        for p in committed.rglob("*")
        if p.is_file() and not (fresh / p.relative_to(committed)).exists()
    )
    assert not stale and not left_over, f"run `make proto` and commit: stale {stale}, no longer generated {left_over}"


def test_published_service_config_is_what_make_proto_produces():
    assert generate.SERVICE_CONFIG.read_text() == generate.service_config(), "run `make proto` and commit"


def _elements(file: descriptor_pb2.FileDescriptorProto):  # type: ignore[no-untyped-def]
    """(path, name) of every service, rpc, message, field, enum and enum value of a file."""

    def message(msg, path):  # type: ignore[no-untyped-def]
        yield path, msg.name
        for i, f in enumerate(msg.field):
            yield (*path, 2, i), f"{msg.name}.{f.name}"
        for i, nested in enumerate(msg.nested_type):
            if not nested.options.map_entry:  # map<k, v> fields: protoc's own, not ours to comment
                yield from message(nested, (*path, 3, i))
        for i, e in enumerate(msg.enum_type):
            yield from enum(e, (*path, 4, i))

    def enum(e, path):  # type: ignore[no-untyped-def]
        yield path, e.name
        for i, v in enumerate(e.value):
            yield (*path, 2, i), f"{e.name}.{v.name}"

    for i, msg in enumerate(file.message_type):
        yield from message(msg, (4, i))
    for i, e in enumerate(file.enum_type):
        yield from enum(e, (5, i))
    for i, service in enumerate(file.service):
        yield (6, i), service.name
        for j, method in enumerate(service.method):
            yield (6, i, 2, j), f"{service.name}.{method.name}"


def test_every_service_rpc_message_field_and_enum_value_is_commented():
    uncommented, checked = [], 0
    for file in generate.descriptor_set(source_info=True).file:
        if not file.name.startswith("voxplane/"):
            continue
        commented = {
            tuple(loc.path)
            for loc in file.source_code_info.location
            if loc.leading_comments.strip() or loc.trailing_comments.strip()
        }
        elements = list(_elements(file))
        checked += len(elements)
        uncommented += [f"{file.name}: {name}" for path, name in elements if path not in commented]
    assert checked > 50
    assert not uncommented, uncommented


def test_public_surface_is_the_clients_options_and_errors():
    assert sorted(voxplane.__all__) == sorted(
        [
            "Numbers", "AsyncNumbers", "Agents", "AsyncAgents", "Calls", "AsyncCalls", "Webhooks",
            "AsyncWebhooks", "Messaging", "AsyncMessaging", "ClientOptions",
            "VoxplaneError", "InvalidArgumentError", "FieldViolation", "NotFoundError", "AlreadyExistsError",
            "FailedPreconditionError", "AbortedError", "UnauthenticatedError", "PermissionDeniedError",
            "UnavailableError", "DeadlineExceededError", "OutOfRangeError", "ResourceExhaustedError",
        ]
    )
    for name in voxplane.__all__:
        assert getattr(voxplane, name)
    assert all(issubclass(getattr(voxplane, n), voxplane.VoxplaneError) for n in voxplane.__all__ if n.endswith("Error"))


def test_migrations_build_exactly_the_models_schema(database_url):
    engine = one_shot_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    engine.dispose()
    assert differences == []


def test_every_package_folder_is_in_the_distribution():
    """pyproject lists packages by hand (two source roots map into `voxplane`): none may be forgotten."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {Path(folder): name for name, folder in config["package-dir"].items()}
    on_disk = {
        ".".join([prefix, *init.parent.relative_to(ROOT / folder).parts])
        for folder, prefix in roots.items()
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert on_disk == set(config["packages"])
