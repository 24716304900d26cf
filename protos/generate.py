"""Generate every client's code, and the gRPC service config, from the contracts in protos/.

Used by `make proto` (writing into clients/python, clients/node and protos/voxplane) and by the
test that fails when what is committed is stale (writing into a temporary folder):

- Python: the modules and .pyi stubs (grpcio-tools, mypy-protobuf), into clients/python;
- Node: TypeScript (ts-proto, run by `buf generate` with clients/node/buf.gen.yaml), into
  clients/node/src/gen;
- the service config (protos/voxplane/service_config.json): a default deadline for every RPC, and
  retries on UNAVAILABLE for the reads only, which each client gets a copy of;
- for the Node client, the mask paths of each update's fields (update_masks.json): what Python's
  clients read from the descriptors, which ts-proto's code does not carry.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

PROTOS = Path(__file__).resolve().parent
ROOT = PROTOS.parent
DEFAULT_OUT = ROOT / "clients" / "python"
NODE = ROOT / "clients" / "node"
SERVICE_CONFIG = PROTOS / "voxplane" / "service_config.json"

# An RPC is a read, retried by every client's channel on UNAVAILABLE, when its name starts with one of
# these verbs or its proto says `option idempotency_level = NO_SIDE_EFFECTS;`. A read changes nothing,
# so repeating it is harmless. Creates are not here: the SDKs retry them themselves, with a request_id.
READ_VERBS = ("Get", "List", "Search", "Check", "Classify", "Export")
DEFAULT_TIMEOUT = "10s"  # the SDKs' default too; a stream (ExportCalls) has none: a long history takes long
RETRY_POLICY = {
    "maxAttempts": 4,  # gRPC allows at most 5
    "initialBackoff": "0.05s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def proto_files() -> list[Path]:
    return sorted(PROTOS.glob("voxplane/**/*.proto"))


def plugin(name: str) -> str:
    """mypy-protobuf's plugins sit beside the interpreter, on PATH or not."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        sys.exit(f"{name} not found: install the dev extras (pip install -e '.[dev]')")
    return found


def _protoc(*args: str) -> None:
    well_known = resources.files("grpc_tools") / "_proto"
    files = [str(p.relative_to(PROTOS)) for p in proto_files()]
    if protoc.main(["grpc_tools.protoc", f"-I{PROTOS}", f"-I{well_known}", *args, *files]) != 0:
        sys.exit("protoc failed")


def descriptor_set(source_info: bool = False) -> descriptor_pb2.FileDescriptorSet:
    """The compiled contracts (with their comments when `source_info`)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "contracts.pb"
        _protoc(*(["--include_source_info"] if source_info else []), f"--descriptor_set_out={out}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


HAND_WRITTEN_PACKAGES = {Path("voxplane/webhooks")}


def generate(out: Path) -> None:
    """The Python modules, stubs and service config, into `out` (clients/python)."""
    _protoc(
        f"--plugin=protoc-gen-mypy={plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
    )
    # Generated folders must be regular packages so setuptools ships them. One is the client's own
    # code too: voxplane/webhooks/__init__.py (voxplane.webhooks.verify), which is not generated.
    for proto in proto_files():
        package = out / proto.parent.relative_to(PROTOS)
        while package != out:
            if package.relative_to(out) not in HAND_WRITTEN_PACKAGES:
                (package / "__init__.py").touch()
            package = package.parent
            if package == out / "voxplane":
                break
    # Package data: an installed wheel has no protos/ folder to read it from.
    (out / "voxplane" / "service_config.json").write_text(service_config())


def node_generated(root: Path) -> Path:
    """Where the Node client's generated code lives under a copy of clients/node."""
    return root / "src" / "gen"


def generate_node(root: Path) -> None:
    """The TypeScript of clients/node, into `root`/src/gen, with buf and ts-proto from node_modules."""
    buf = NODE / "node_modules" / ".bin" / "buf"
    if not buf.exists():
        sys.exit(f"{buf} not found: run `make install` (npm ci in clients/node)")
    scratch = Path(tempfile.mkdtemp())
    try:
        # buf puts the plugin's `out` (src/gen) under -o; the plugin path is relative to clients/node.
        subprocess.run([str(buf), "generate", "--template", "buf.gen.yaml", "-o", str(scratch)], cwd=NODE, check=True)
        target = node_generated(root)
        shutil.rmtree(target, ignore_errors=True)  # nothing of a renamed or removed proto may stay behind
        shutil.copytree(node_generated(scratch), target)
    finally:
        shutil.rmtree(scratch)
    (target / "service_config.json").write_text(service_config())
    (target / "update_masks.json").write_text(update_masks())


def rpcs() -> list[tuple[str, str, bool, bool]]:
    """Every RPC of the contracts as (service full name, method, is a read, is a stream), in contract order."""
    read_only = descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS
    return [
        (
            f"{file.package}.{service.name}",
            m.name,
            m.name.startswith(READ_VERBS) or m.options.idempotency_level == read_only,
            m.server_streaming or m.client_streaming,
        )
        for file in descriptor_set().file
        if file.package.startswith("voxplane.")
        for service in file.service
        for m in service.method
    ]


def service_config() -> str:
    """The gRPC service config of every service: a deadline, and retries for the reads."""
    methods = rpcs()
    services = list(dict.fromkeys(service for service, *_ in methods))
    configs: list[dict[str, object]] = [{"name": [{"service": s} for s in services], "timeout": DEFAULT_TIMEOUT}]
    # Overrides of that default: unary reads, streamed reads, other streams (no deadline, no retries).
    for read, stream in ((True, False), (True, True), (False, True)):
        names = [{"service": s, "method": m} for s, m, r, st in methods if (r, st) == (read, stream)]
        if not names:
            continue
        config: dict[str, object] = {"name": names}
        if not stream:
            config["timeout"] = DEFAULT_TIMEOUT
        if read:
            config["retryPolicy"] = RETRY_POLICY
        configs.append(config)
    text = json.dumps({"methodConfig": configs}, indent=2)
    # One line per method name, so that the file reads as the list it is.
    return re.sub(r"\{\s+([^{}\[\]]*?)\s+\}", lambda m: "{" + " ".join(m.group(1).split()) + "}", text) + "\n"


def update_masks() -> str:
    """For each RPC whose request has an `update_mask`: its fields by their camelCase (JSON) name, each
    the path that names it in the mask, or, for a message that is not one of a oneof, its path and its
    own fields (a given sub-message names its fields, one path each: `settings.recording_enabled`)."""
    files = descriptor_set().file
    messages: dict[str, descriptor_pb2.DescriptorProto] = {}

    def index(scope: str, message: descriptor_pb2.DescriptorProto) -> None:
        messages[f"{scope}.{message.name}"] = message
        for nested in message.nested_type:
            index(f"{scope}.{message.name}", nested)

    for file in files:
        for message in file.message_type:
            index(f".{file.package}", message)
    repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED

    def paths(message: descriptor_pb2.DescriptorProto) -> dict[str, object]:
        fields: dict[str, object] = {}
        for field in message.field:
            nested = messages.get(field.type_name)  # a message of the contract's (not a well-known type)
            if nested is not None and field.label != repeated and not field.HasField("oneof_index"):
                fields[field.json_name] = {"path": field.name, "fields": paths(nested)}
            else:
                fields[field.json_name] = field.name
        return fields

    masks = {
        f"{file.package}.{service.name}/{method.name}": paths(messages[method.input_type])
        for file in files
        for service in file.service
        for method in service.method
        if any(field.name == "update_mask" for field in messages[method.input_type].field)
    }
    return json.dumps(masks, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the Python code goes")
    parser.add_argument("--node-out", type=Path, default=NODE, help="the clients/node folder it writes src/gen of")
    arguments = parser.parse_args()
    generate(arguments.out)
    generate_node(arguments.node_out)
    SERVICE_CONFIG.write_text(service_config())
