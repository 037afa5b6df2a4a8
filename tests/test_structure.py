"""The package's module graph: no import cycle, counting imports made inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "squeezebert"


def _imported_modules(source: str, modules: set[str]) -> set[str]:
    """The package modules a file imports anywhere in it (top level, functions, classes)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "squeezebert":  # from squeezebert import X: X may be a module
                found |= {alias.name for alias in node.names if alias.name in modules}
                continue
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "squeezebert" and len(parts) > 1 and parts[1] in modules:
                found.add(parts[1])
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports (itself and ``__init__`` left out)."""
    files = {p.stem: p for p in package.glob("*.py") if p.stem != "__init__"}
    modules = set(files)
    return {name: _imported_modules(p.read_text(encoding="utf-8"), modules) - {name} for name, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None when the graph is acyclic (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_find_cycle_names_the_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_function_level_imports_count(tmp_path):
    (tmp_path / "one.py").write_text("def f():\n    from squeezebert.two import g\n")
    (tmp_path / "two.py").write_text("def g():\n    import squeezebert.one\n")
    (tmp_path / "three.py").write_text("from squeezebert import one, json\n")
    graph = import_graph(tmp_path)
    assert graph == {"one": {"two"}, "two": {"one"}, "three": {"one"}}
    assert find_cycle(graph) == ["one", "two", "one"]


def test_package_has_no_import_cycle():
    graph = import_graph()
    assert {"infer", "backends", "export", "export_openvino"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in src/squeezebert: " + " -> ".join(cycle or [])
    assert "infer" not in graph["export_openvino"] and "infer" not in graph["export"]
