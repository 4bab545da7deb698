"""The package's boundaries: the import contracts, no import cycles, only the command line prints, only the
preset registry names a protocol, and a README layout paragraph that names every folder and module there is.
(Sizes are not checked: a module is as long as its one idea needs.)"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gptloss_cli"
MODULES = sorted(PACKAGE.rglob("*.py"))
COMMAND_MODULES = ["score", "tokens", "compare", "merge", "explain", "annotate", "filter", "serve", "models"]
CLI = PACKAGE / "cli"
PROTOCOL_REGISTRY = {PACKAGE / "core" / "protocols.py", PACKAGE / "core" / "presets.py"}
# The presets' names as code or data spells them (llama.cpp is left out: it is also a backend's name).
PROTOCOL_NAME = re.compile(r"\b(hf[-_]stride|gptq|lm[-_]eval)\b")


def relative(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


def test_registered_commands_are_the_command_modules() -> None:
    from gptloss_cli.cli import app

    assert sorted(c.callback.__name__ for c in app.registered_commands if c.callback) == sorted(COMMAND_MODULES)


def test_import_contracts_hold() -> None:
    """The layers and forbidden imports of pyproject.toml's [tool.importlinter] (what `lint-imports` checks)."""
    cli = pytest.importorskip("importlinter.cli")
    assert cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def _writes_to_the_terminal(node: ast.AST) -> bool:
    """print(...), sys.stdout.write(...) or sys.stderr.write(...)."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name):
        return func.id == "print"
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "write"
        and isinstance(func.value, ast.Attribute)
        and func.value.attr in ("stdout", "stderr")
        and isinstance(func.value.value, ast.Name)
        and func.value.value.id == "sys"
    )


def test_only_the_command_line_prints() -> None:
    """Library code (everything outside cli/) returns what it has to say; the console says it."""
    found = [
        f"{relative(path)}:{node.lineno}"
        for path in MODULES
        if CLI not in path.parents
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if _writes_to_the_terminal(node)
    ]
    assert not found, found


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring constants of a module, its classes and functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _protocol_names(path: Path) -> Iterator[str]:
    """Where a module names a preset in code: a string (not a docstring), an attribute or a variable."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
        elif isinstance(node, ast.Attribute):
            text = node.attr
        elif isinstance(node, ast.Name):
            text = node.id
        else:
            continue
        if match := PROTOCOL_NAME.search(text):
            yield f"{relative(path)}:{node.lineno} {match.group()}"


def test_only_the_preset_registry_names_a_protocol() -> None:
    """A preset is one class and one registry line: no other module knows a protocol by its name."""
    found = [hit for path in MODULES if path not in PROTOCOL_REGISTRY for hit in _protocol_names(path)]
    assert not found, found


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
    """The README's layout block lists each folder of the package with its modules, and nothing else; a folder
    indented under another is inside it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- layout:start -->\n```text\n(.*?)```\n<!-- layout:end -->", readme, re.S)
    assert block, "the README has no layout block"
    listed: dict[str, set[str]] = {}
    parents: list[tuple[int, str]] = []  # (indent, path) of the folders open above this line
    for line in block.group(1).splitlines():
        match = re.match(r"^(\s*)(\S+/)?\s+(\S+\.py(?: \S+\.py)*)\s*(?:#.*)?$", line)
        if not match:
            continue
        indent, name = len(match.group(1)), (match.group(2) or "").rstrip("/")
        while parents and parents[-1][0] >= indent:
            parents.pop()
        folder = (f"{parents[-1][1]}/{name}" if parents else name) if name else ""
        if name:
            parents.append((indent, folder))
        listed[folder] = set(match.group(3).split())
    actual: dict[str, set[str]] = {}
    for path in MODULES:
        folder = "" if path.parent == PACKAGE else str(path.parent.relative_to(PACKAGE))
        actual.setdefault(folder, set()).add(path.name)
    assert listed == actual
