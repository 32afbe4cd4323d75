"""The package's import graph points one way (issue 10): no cycle, counting function-local imports.

Read with `ast` from the source files, so an import hidden inside a function counts as an edge too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rftlab"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Every rftlab module `path` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from rftlab.pipeline import analysis` imports the submodule analysis
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {m: imported_modules(p, modules) - {m} for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None. Package __init__ edges count too."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for n in graph.get(todo.pop(), ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_bandit_simulator_sits_on_the_objectives_floor():
    graph = import_graph()
    allowed = {
        "rftlab",
        "rftlab.objectives",
        "rftlab.errors",
        "rftlab.files",
        "rftlab.plotting",
        "rftlab.verdicts",
    }
    for m in graph:
        if m.startswith("rftlab.bandit"):
            above = {n for n in graph[m] if not n.startswith("rftlab.bandit")} - allowed
            assert not above, f"{m} imports {sorted(above)}"


def test_leaves_import_no_rftlab_module():
    graph = import_graph()
    for leaf in ("rftlab.errors", "rftlab.files", "rftlab.plotting", "rftlab.verdicts"):
        assert not graph[leaf] - {"rftlab"}, (leaf, graph[leaf])


def test_library_below_commands_never_imports_them():
    graph = import_graph()
    for m, deps in graph.items():
        if not m.startswith(("rftlab.cli", "rftlab.commands")):
            assert not {n for n in deps if n.startswith(("rftlab.cli", "rftlab.commands"))}, m


def test_pipeline_imports_nothing_from_report():
    graph = import_graph()
    for m, deps in graph.items():
        if m.startswith("rftlab.pipeline"):
            assert not {n for n in deps if n.startswith("rftlab.report")}, m


def test_trainer_imports_nothing_above_it():
    above = {
        n
        for n in reachable(import_graph(), "rftlab.trainer")
        if n.startswith(("rftlab.report", "rftlab.pipeline", "rftlab.cli", "rftlab.commands"))
    }
    assert not above, sorted(above)
