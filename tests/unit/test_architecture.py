"""The package's shape, kept by tests: imports point one way, modules stay readable.

Function-level (lazy) imports are how heavy or late-needed modules are loaded, so they do
not count as edges; module-level imports and those under ``TYPE_CHECKING`` do.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pytest_inferbudget"
MAX_LINES = 500
LONG_MODULE_REASON = "Longer than 500 lines because"
"""A module over :data:`MAX_LINES` says why in its docstring, starting with these words."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports at module level, including inside ``if TYPE_CHECKING:`` and try blocks."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If | ast.Try):
            pending.extend(node.body)
            pending.extend(node.orelse)
            if isinstance(node, ast.Try):
                for handler in node.handlers:
                    pending.extend(handler.body)
                pending.extend(node.finalbody)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports at module level (or under TYPE_CHECKING).

    ``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg``.
    A module's implicit import of its own parent packages is not an edge (every Python
    import does it, and a package's ``__init__`` re-exporting its members would otherwise
    always form a cycle with them).
    """
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in _top_level_imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            edges.update(t for t in targets if t in known and t != name)
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = edges - ancestors
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_type_checking_and_relative_imports() -> None:
    graph = import_graph()
    assert "pytest_inferbudget.records" in graph["pytest_inferbudget.recorder"]
    assert "pytest_inferbudget.errors" in graph["pytest_inferbudget.meters.select"]


def test_no_import_cycle_among_the_package_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_lower_layers_import_no_higher_one() -> None:
    """DESIGN.md section 2: records, metrics, hardware and errors are the bottom layer;
    engines and strategies never import the plugin's run machinery."""
    graph = import_graph()
    bottom = ("pytest_inferbudget.records", "pytest_inferbudget.metrics")
    higher = ("plugin", "run", "fixtures", "config", "verdicts", "compare", "report", "storage")
    upward = sorted(
        f"{name} -> {target}"
        for name, targets in graph.items()
        for target in targets
        if name.startswith((*bottom, "pytest_inferbudget.engines", "pytest_inferbudget.strategies"))
        and target.removeprefix("pytest_inferbudget.").split(".")[0] in higher
    )
    assert upward == []


def test_no_module_is_long_without_a_reason_at_its_top() -> None:
    long = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if lines > MAX_LINES and LONG_MODULE_REASON not in docstring:
            long.append(f"{name} ({lines} lines)")
    assert long == [], f"say why at the top ('{LONG_MODULE_REASON} ...') or split: {long}"
