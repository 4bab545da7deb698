"""The package's shape: small modules and functions, commands with few parameters, no import cycles, and
a README layout paragraph that names every folder and module there is."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gptloss_cli"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60
MAX_COMMAND_PARAMETERS = 8
COMMAND_MODULES = ["score", "tokens", "compare", "merge", "explain", "models"]


def functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_are_small(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    for node in functions(ast.parse(source)):
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        assert length <= MAX_FUNCTION_LINES, f"{node.name}: {length} lines"


@pytest.mark.parametrize("name", COMMAND_MODULES)
def test_commands_take_few_parameters(name: str) -> None:
    tree = ast.parse((PACKAGE / "cli" / f"{name}.py").read_text(encoding="utf-8"))
    command = next(f for f in functions(tree) if f.name == name)
    arguments = command.args
    count = len(arguments.posonlyargs) + len(arguments.args) + len(arguments.kwonlyargs)
    assert 0 < count <= MAX_COMMAND_PARAMETERS


def test_registered_commands_are_the_command_modules() -> None:
    from gptloss_cli.cli import app

    assert sorted(c.callback.__name__ for c in app.registered_commands if c.callback) == sorted(COMMAND_MODULES)


def test_no_import_cycles() -> None:
    """No module imports itself back through others (imports only for type checking aside)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("gptloss_cli", exclude_type_checking_imports=True)
    modules = sorted(graph.modules)
    edges = {m: graph.find_modules_directly_imported_by(m) & graph.modules for m in modules}
    cycles = _strongly_connected(modules, edges)
    assert not cycles, cycles


def _strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components of more than one node (each is a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in nodes:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _strongly_connected(list(edges), edges) == [["a", "b", "c"]]


def test_readme_layout_matches_the_tree() -> None:
    """The README's layout block lists each folder of the package with its modules, and nothing else."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- layout:start -->\n```text\n(.*?)```\n<!-- layout:end -->", readme, re.S)
    assert block, "the README has no layout block"
    listed: dict[str, set[str]] = {}
    for line in block.group(1).splitlines():
        match = re.match(r"^\s*(\S+/)?\s+(\S+\.py(?: \S+\.py)*)\s*(?:#.*)?$", line)
        if match:
            folder = (match.group(1) or "").rstrip("/")
            listed[folder] = set(match.group(2).split())
    actual: dict[str, set[str]] = {}
    for path in MODULES:
        folder = "" if path.parent == PACKAGE else str(path.parent.relative_to(PACKAGE))
        actual.setdefault(folder, set()).add(path.name)
    assert listed == actual
