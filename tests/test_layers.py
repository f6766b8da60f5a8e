"""The product's modules import one another in layers, never in a circle, and no production
process loads the developers' tools. Read from the source (no module is imported), so that a
lazy import inside a function counts as much as one at the top. What each folder may import
at all is ruff's part (the banned-api rules in workflows/, domain/ and sandbox/ruff.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import ROOT

PRODUCT = (
    "api",
    "activities",
    "commands",
    "domain",
    "epay",
    "sandbox",
    "store",
    "tools",
    "workers",
    "workflows",
)
# What production processes run: the API, the workers, the codec server and the commands.
ENTRY_POINTS = ("api.app", "workers.main", "commands.cli", "commands.codec_server")


def product_modules() -> dict[str, Path]:
    found = {}
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(modules: dict[str, Path], *, top_level_only: bool) -> dict[str, set[str]]:
    """Each module's imports of other product modules (``from a import b`` names ``a.b`` when
    ``b`` is a module)."""

    def module_of(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        nodes = _top_level(tree) if top_level_only else list(ast.walk(tree))
        found = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                found |= {module_of(alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {
                    module_of(f"{node.module}.{alias.name}") or module_of(node.module)
                    for alias in node.names
                }
        graph[name] = {m for m in found if m is not None and m != name}
    return graph


def _top_level(tree: ast.Module) -> list[ast.AST]:
    """What runs when the module is imported: its body, into ``with``, ``if`` and ``try``
    blocks (``imports_passed_through``, ``TYPE_CHECKING``), not into functions."""
    nodes: list[ast.AST] = []
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        nodes.append(node)
        if isinstance(node, ast.With | ast.If | ast.Try):
            pending += [
                child
                for child in ast.iter_child_nodes(node)
                if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            ]
    return nodes


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_product_modules_import_each_other_in_a_circle() -> None:
    graph = imports(product_modules(), top_level_only=False)
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_production_process_loads_the_tools() -> None:
    graph = imports(product_modules(), top_level_only=True)
    reached, pending = set(), list(ENTRY_POINTS)
    while pending:
        module = pending.pop()
        if module not in reached:
            reached.add(module)
            pending += graph.get(module, ())
    assert {m for m in reached if m.split(".")[0] == "tools"} == set()
    assert "workers.main" in reached
    assert "api.app" in reached


def imported_test_modules(source: str) -> set[str]:
    """The test modules (``tests/**/test_*.py``) that ``source`` imports, lazily or not."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {
            name
            for name in names
            if name.split(".")[0] == "tests" and name.split(".")[-1].startswith("test_")
        }
    return found


def test_no_test_module_imports_another() -> None:
    """What several test modules share lives in tests/support/, so that a test module can be
    run, moved or removed on its own."""
    found = {
        str(path.relative_to(ROOT)): sorted(imported_test_modules(path.read_text()))
        for path in (ROOT / "tests").rglob("*.py")
    }
    assert {path: names for path, names in found.items() if names} == {}


def test_the_test_import_check_finds_one() -> None:
    source = (
        "from tests.support import ROOT\n"
        "from tests.test_payments import assert_paid_once\n"
        "def f():\n"
        "    import tests.histories.test_x\n"
        "    from tests import test_refunds\n"
    )
    assert imported_test_modules(source) == {
        "tests.test_payments",
        "tests.histories.test_x",
        "tests.test_refunds",
    }
