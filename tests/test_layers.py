"""The layering DESIGN.md asks for, checked on the source: servicer -> messages -> rules -> persistence.

Read from every `import` in services/ (those inside functions too), so a shortcut that would
run an import back up, or close a circle, fails here rather than in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parent.parent / "services"
PACKAGE = "voxplane.services"


def _module(path: Path) -> str:
    parts = path.relative_to(SERVICES).with_suffix("").parts
    return ".".join([PACKAGE, *parts]).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """The modules `path` imports (for `from x import y`: x.y when that is a module, else x)."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = f"{base}.{node.module}" if node.level and node.module else base if node.level else node.module
            assert target is not None
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target)
    return found


FILES = [p for p in SERVICES.rglob("*.py") if "migrations" not in p.parts]
MODULES = {_module(p) for p in FILES}
GRAPH = {_module(p): {m for m in _imports(p) if m in MODULES} for p in FILES}
EXTERNAL = {_module(p): _imports(p) - MODULES for p in FILES}


def _rank(module: str) -> int:
    """Higher layers may import lower ones (or their own), never the other way."""
    name = module.removeprefix(PACKAGE + ".")
    top, _, leaf = name.partition(".")
    if name in ("app", "cli", "schema") or not leaf:
        return 5
    if top in ("core", "persistence"):
        return 0
    if leaf.startswith("servicer"):
        return 4
    if leaf in ("messages", "runner"):
        return 3
    if leaf == "models":
        return 1
    return 2  # the rules of the service, and its adapters to other services and the network


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    upward = sorted(
        f"{m} imports {i}" for m, imported in GRAPH.items() for i in imported if _rank(i) > _rank(m)
    )
    assert upward == []


def test_no_servicer_module_imports_another_but_the_one_that_assembles_them():
    crossing = sorted(
        f"{m} imports {i}"
        for m, imported in GRAPH.items()
        for i in imported
        if _rank(m) == _rank(i) == 4 and not m.endswith(".servicer")
    )
    assert crossing == []


def test_services_know_nothing_of_any_one_service_in_core_and_persistence():
    known = sorted(f"{m} imports {i}" for m, imported in GRAPH.items() for i in imported
                   if _rank(m) == 0 and _rank(i) > 0)
    assert known == []


def test_there_is_no_import_circle():
    circles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            circles.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        for imported in sorted(GRAPH[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])
    assert circles == []


def test_the_rules_import_neither_grpc_nor_protos():
    """Plain Python below the messages layer: only the adapter that asks other services uses a client."""
    speaking_grpc = sorted(
        f"{m} imports {e}"
        for m, external in EXTERNAL.items()
        for e in external
        if 1 <= _rank(m) <= 2 and not m.endswith(".directory")
        and (e.split(".")[0] == "grpc" or e.endswith("_pb2") or e.startswith("voxplane.") and "services" not in e
             or e == "voxplane")
    )
    assert speaking_grpc == []


def test_the_servers_use_only_the_public_surface_of_the_client():
    private = sorted(f"{m} imports {e}" for m, external in EXTERNAL.items() for e in external
                     if e.startswith("voxplane._"))
    assert private == []
