"""Imports point down: no cycle between modules, nor between the package's rooms."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[2] / "src"
PACKAGE = SRC / "llenergymeasure"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every llenergymeasure import of every module, lazy (in-function) ones included."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "llenergymeasure"
            ):
                targets.add(node.module)
                targets |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("llenergymeasure")}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def room(module: str) -> str:
    """The package's room of a module: config, backends, devices, measure, results, ..."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def rooms_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for source, targets in graph.items():
        rooms.setdefault(room(source), set()).update(
            room(t) for t in targets if room(t) != room(source)
        )
    return rooms


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_detector_finds_a_planted_cycle():
    graph = import_graph()
    assert graph["llenergymeasure.measure.session"], "the graph sees real imports"
    planted = {**graph, "llenergymeasure.config.models": {"llenergymeasure.measure.session"}}
    assert cycles(planted), "a cycle added on purpose is found"
    assert cycles(rooms_graph(planted))


def test_no_module_imports_itself_back():
    assert cycles(import_graph()) == []


def test_rooms_import_downwards_only():
    rooms = rooms_graph(import_graph())
    assert cycles(rooms) == [], rooms
    assert "measure" not in rooms["devices"] | rooms["backends"] | rooms["results"]
    assert rooms["config"] <= {"__init__", "embedded", "errors"}  # __init__: the version
    assert {r for r, targets in rooms.items() if "containers" in targets} <= {"cli"}
