"""The layer contract: fewlabel's packages follow the data flow, and no import goes against it.

Every module belongs to one layer; a module may import from its own layer and the layers before it,
never from a later one, and the module import graph has no cycle. Imports inside functions count (a
lazy import is still a dependency); imports under ``if TYPE_CHECKING:`` do not (they never run).
The order is written down in docs/layout.md too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "fewlabel"

# Layers in data-flow order: each may use the ones before it. The package root only re-exports names
# lazily (by string), so it is part of the foundation.
LAYERS: list[tuple[str, ...]] = [
    ("fewlabel", "fewlabel.__main__", "fewlabel.errors", "fewlabel.progress", "fewlabel.atomic"),
    ("fewlabel.data",),
    ("fewlabel.encoders",),
    ("fewlabel.finetuning",),
    ("fewlabel.strategies",),
    ("fewlabel.evaluation",),
    ("fewlabel.config",),
    # The typed records of a model directory: what the report renders and the store writes.
    ("fewlabel.model_dir.records",),
    ("fewlabel.report", "fewlabel.multilabel_report"),
    ("fewlabel.model_dir",),
    ("fewlabel.training", "fewlabel.multilabel", "fewlabel.distill"),
    ("fewlabel.inference",),
    ("fewlabel.estimator",),
    ("fewlabel.serve",),
    ("fewlabel.cli",),
]
# ``fewlabel.__main__`` runs the CLI; it is the one entry point allowed to reach the top.
ENTRY_POINTS = {"fewlabel.__main__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, index = "", -1
    for i, members in enumerate(LAYERS):
        for member in members:
            if (module == member or module.startswith(member + ".")) and len(member) > len(best):
                best, index = member, i
    if index < 0:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS and to docs/layout.md")
    return index


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The fewlabel modules that ``path`` imports (``from pkg import mod`` resolves to ``pkg.mod``)."""
    me = module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if _under_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "fewlabel")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "fewlabel":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    found.discard(me)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


GRAPH = import_graph()


def test_every_module_has_a_layer():
    for module in GRAPH:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_import_from_a_later_layer(module):
    if module in ENTRY_POINTS:
        return
    mine = layer_of(module)
    upward = sorted(dep for dep in GRAPH[module] if layer_of(dep) > mine)
    assert not upward, f"{module} (layer {LAYERS[mine][0]}) imports from later layers: {upward}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_catch_what_they_guard_against():
    """The contract would fail on a cycle and on an upward import (so the tests above can fail)."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("fewlabel.cli.main") > layer_of("fewlabel.training") > layer_of("fewlabel.data")
    assert layer_of("fewlabel.strategies.wrapper") == layer_of("fewlabel.strategies")
