"""The package's import graph has no loop, counting imports inside functions too (they hide loops
from Python's import machinery, not from a reader)."""

from __future__ import annotations

import ast
from pathlib import Path

import iobench

PACKAGE = Path(iobench.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The iobench modules `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # from iobench import lab
    return {m for m in found if m in modules}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    mods = set(files)
    # importing a package's module runs the package's __init__ first; that edge is not a loop of ours
    return {m: {t for t in imports(p, mods) if t != m and not m.startswith(t + ".")} for m, p in files.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_finder_sees_a_loop_hidden_in_a_function() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_reads_imports_inside_functions() -> None:
    edges = graph()
    assert "iobench.report" in edges["iobench.cli"]  # imported inside cmd_report only
    assert "iobench.schema" in edges["iobench.measure"]


def test_the_package_has_no_import_loop() -> None:
    assert cycle(graph()) is None, " -> ".join(cycle(graph()) or [])


def test_the_runner_orchestrates_and_names_no_counter() -> None:
    """Everything that measures is an instrument (iobench.instruments): the runner imports no counter
    module, and measure (which assembles rows) none either."""
    edges = graph()
    for module in ("iobench.runner", "iobench.measure", "iobench.timeline"):
        assert not {m for m in edges[module] if m.startswith("iobench.counters")}, (module, edges[module])
    assert "iobench.instruments" in edges["iobench.runner"]
