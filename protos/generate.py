"""Generate the Python modules and .pyi stubs of every contract in protos/.

Used by `make proto` (writing into clients/python) and by the test that fails
when the committed generated code is stale (writing into a temporary folder).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTOS = Path(__file__).resolve().parent
DEFAULT_OUT = PROTOS.parent / "clients" / "python"


def proto_files() -> list[Path]:
    return sorted(PROTOS.glob("voxplane/**/*.proto"))


def plugin(name: str) -> str:
    """mypy-protobuf's plugins sit beside the interpreter, on PATH or not."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        sys.exit(f"{name} not found: install the dev extras (pip install -e '.[dev]')")
    return found


def generate(out: Path) -> None:
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *(str(p.relative_to(PROTOS)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    # Generated folders must be regular packages so setuptools ships them.
    for proto in proto_files():
        package = out / proto.parent.relative_to(PROTOS)
        while package != out:
            (package / "__init__.py").touch()
            package = package.parent
            if package == out / "voxplane":
                break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    generate(parser.parse_args().out)
