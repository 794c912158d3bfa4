"""The package's layout rules (docs/architecture.md), checked on the source: no import cycles, and no
function-local import of the package's own modules unless a comment on that line says why."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "cosinetrack"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(imported cosinetrack module, line, inside a function)`` for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            local = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names if a.name.startswith("cosinetrack")]
                found.extend((name, child.lineno, in_function) for name in names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("cosinetrack"):
                for alias in child.names:  # "from cosinetrack.apps.cell import pipeline" imports a module too
                    sub = f"{child.module}.{alias.name}"
                    module_file = SRC / Path(*sub.split("."))
                    is_module = module_file.with_suffix(".py").exists() or module_file.is_dir()
                    found.append((sub if is_module else child.module, child.lineno, in_function))
            visit(child, local)

    visit(tree, False)
    return found


def _graph() -> dict[str, set[str]]:
    """Module -> modules it imports, at module level or inside a function (a cycle hidden by a
    function-local import is still two modules that need each other)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        deps = graph.setdefault(name, set())
        for target, _, _local in _imports(path):
            if target != name:
                deps.add(target)
                # importing a.b.c runs a/__init__ and a/b/__init__ first
                parts = target.split(".")
                deps.update(".".join(parts[:i]) for i in range(2, len(parts)) if ".".join(parts[:i]) != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles():
    # a package __init__ re-exporting its modules is not a cycle with them: drop package -> own module edges
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in _graph().items()}
    assert _cycles(graph) == []


def test_function_local_imports_of_the_package_say_why():
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        for target, lineno, local in _imports(path):
            if local and "#" not in lines[lineno - 1]:
                unexplained.append(f"{path.relative_to(SRC)}:{lineno} imports {target}")
    assert unexplained == []


#: layers, lowest first: a module may import its own layer and the ones below, never one above
LAYERS = {"core": 0, "workflows": 1, "apps": 2}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def test_no_module_imports_upwards():
    """The core never imports a task wing (``apps``) or ``workflows``, and ``workflows`` no wing."""
    upward = sorted(
        f"{m} imports {d}"
        for m, deps in _graph().items()
        for d in deps
        if d.startswith("cosinetrack.") and _layer(d) > _layer(m) and m != "cosinetrack"
    )
    assert upward == []


def test_wings_do_not_import_each_other():
    """A task wing uses the core, not another task's wing."""
    crossing = sorted(
        f"{m} imports {d}"
        for m, deps in _graph().items()
        if m.startswith("cosinetrack.apps.")
        for d in deps
        if d.startswith("cosinetrack.apps.") and d.split(".")[2] != m.split(".")[2]
    )
    assert crossing == []


@pytest.mark.parametrize("bad, expected", [({"a": {"b"}, "b": {"a"}}, [["a", "b"]]), ({"a": {"b"}, "b": set()}, [])])
def test_cycle_finder(bad, expected):
    assert _cycles(bad) == expected


def _expressions(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _expressions(value, (*path, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _expressions(value, (*path, str(i)))
    elif isinstance(node, str) and node.startswith("$"):
        yield "#".join(path), node


def test_config_expressions_are_short():
    """Logic lives in the package: a bundle's ``$`` expression wires names, at most 120 characters."""
    root = SRC.parent
    long = [
        f"{f.relative_to(root)}: {key} ({len(expr)} characters)"
        for f in sorted([*root.glob("bundles/*/*.json"), *root.glob("configs/*.json")])
        for key, expr in _expressions(json.loads(f.read_text()))
        if len(expr) > 120
    ]
    assert long == []
