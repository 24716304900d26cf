"""The contract and the package surface: fresh generated code, commented protos, schema in sync."""

from __future__ import annotations

import filecmp
import sys
import tomllib
from importlib import resources
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

import voxplane
from voxplane.services.persistence.db import one_shot_engine
from voxplane.services.schema import metadata

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "protos"))
import generate  # noqa: E402  (protos/generate.py, what `make proto` runs)


def test_committed_generated_code_is_what_make_proto_produces(tmp_path):
    generate.generate(tmp_path)
    produced = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert produced, "nothing was generated"
    committed = ROOT / "clients" / "python"
    stale = [str(p) for p in produced if not filecmp.cmp(tmp_path / p, committed / p, shallow=False)]
    assert not stale, f"run `make proto` and commit: {stale}"


def _descriptor_set(tmp_path: Path) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path / "contracts.pb"
    well_known = resources.files("grpc_tools") / "_proto"
    files = [str(p.relative_to(generate.PROTOS)) for p in generate.proto_files()]
    args = ["protoc", f"-I{generate.PROTOS}", f"-I{well_known}", "--include_source_info", f"--descriptor_set_out={out}"]
    assert protoc.main([*args, *files]) == 0
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


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


def test_every_service_rpc_message_field_and_enum_value_is_commented(tmp_path):
    uncommented, checked = [], 0
    for file in _descriptor_set(tmp_path).file:
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
            "Numbers", "AsyncNumbers", "Agents", "AsyncAgents", "Calls", "AsyncCalls", "ClientOptions",
            "VoxplaneError", "InvalidArgumentError", "FieldViolation", "NotFoundError", "AlreadyExistsError",
            "FailedPreconditionError", "AbortedError", "UnauthenticatedError", "PermissionDeniedError",
            "UnavailableError", "DeadlineExceededError",
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
