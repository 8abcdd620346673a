"""The telemetry workload is a plug-in of the core, not a part of it: no module outside dpbench/telemetry imports
it, so the core installs and runs without its packages (tests/test_install.py runs that). Read from the source
(every import statement, at any depth), not from what happens to be imported at run time."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = "dpbench.telemetry"
# Modules that still import the workload, each to move into it (issue 17, item 3: telemetry's model code lives
# with telemetry). A listed module that no longer imports it fails the test, so the list only shrinks.
NOT_YET_MOVED: set[str] = set()


def imported_modules(source: str, package: str) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in ``source`` names, relative imports resolved from
    ``package`` (the dotted package the source file is in)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = parts[: len(parts) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def imports_the_workload(source: str, package: str) -> bool:
    return any(name == BENCHMARK or name.startswith(BENCHMARK + ".") for name in imported_modules(source, package))


def core_importers() -> set[str]:
    """The modules of dpbench and mechanisms outside dpbench/telemetry that import the workload."""
    importers = set()
    for path in [*(REPO / "dpbench").rglob("*.py"), *(REPO / "mechanisms").rglob("*.py")]:
        relative = path.relative_to(REPO)
        if relative.as_posix().startswith("dpbench/telemetry/"):
            continue
        if imports_the_workload(path.read_text(), ".".join(relative.parts[:-1])):
            importers.add(relative.as_posix())
    return importers


def test_no_core_module_imports_the_telemetry_workload():
    importers = core_importers()
    new, moved = sorted(importers - NOT_YET_MOVED), sorted(NOT_YET_MOVED - importers)
    assert not new, f"outside dpbench/telemetry, these import it: {new}"
    assert not moved, f"these no longer import it, drop them from NOT_YET_MOVED: {moved}"


@pytest.mark.parametrize(
    "source",
    [
        "import dpbench.telemetry.schema",
        "import dpbench.telemetry as workload",
        "from dpbench.telemetry import schema",
        "from dpbench import telemetry",
        "from ..telemetry import schema",
        "from .. import telemetry",
        "def load():\n    from dpbench.telemetry.schema import TABLES",
    ],
)
def test_the_scan_sees_every_form_of_import(source):
    assert imports_the_workload(source, "dpbench.data")


@pytest.mark.parametrize("source", ["import dpbench.training", "from dpbench import telemetry_like", "from . import x"])
def test_the_scan_does_not_flag_other_imports(source):
    assert not imports_the_workload(source, "dpbench.data")


LOOP_AND_EXPERIMENT = ("dpbench/training/loop.py", "dpbench/training/experiment.py")


def attribute_probes(source: str) -> list[str]:
    """Every ``hasattr``/``getattr`` call in ``source``: how code asks an object what it happens to have."""
    return [
        f"{node.func.id}(...) on line {node.lineno}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr")
    ]


@pytest.mark.parametrize("path", LOOP_AND_EXPERIMENT)
def test_the_loop_and_the_experiment_call_the_workload_interface_only(path):
    """They call dpbench.workload.Workload's methods; asking a workload or model what it has would bypass it."""
    assert attribute_probes((REPO / path).read_text()) == []


def test_the_probe_scan_sees_hasattr_and_getattr():
    assert len(attribute_probes("if hasattr(data, 'utility'):\n    f(getattr(model, 'loss', None))")) == 2


def module_graph() -> dict[str, set[str]]:
    """dpbench's modules and, for each, the dpbench modules it imports (at any depth: a deferred import is an edge)."""
    paths = {}
    for path in (REPO / "dpbench").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {m for m in imported_modules(path.read_text(), package) if m in paths and m != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan): each is an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles():
    """Layers import downwards only, so each module can be read (and tested) after the ones it uses."""
    assert import_cycles(module_graph()) == []


def test_the_cycle_scan_finds_a_cycle_through_a_deferred_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert len(module_graph()) > 50
