"""No import cycles among ffaa's modules, run-time imports included.

A cycle works only while every module in it reaches the names it needs before the next one
asks for them, so it breaks on an unrelated reordering, or when a lazy import inside a function
is hoisted to the top. The graph is read from the source (no module is imported):

* every `import` and `from ... import` counts, at the top, in functions, classes and `try`
  blocks alike, except in the body of `if TYPE_CHECKING:` (annotations only, never run);
* relative imports are resolved against the importing module's package (a package's
  `__init__` is its own package); `from X import n` is an edge to `X.n` when that is a module,
  else to `X`;
* importing `a.b.c` runs `a` and `a.b` first, so the edge to `a.b.c` also counts as edges to
  `a.b` and `a` (`from ffaa.batch.runner import ...` runs `ffaa/batch/__init__.py` and all
  it re-exports);
* edges from a module to its own ancestor packages are dropped: Python has run them (or is
  running them) before the module's first line, so such an import (`from .. import
  __version__`) starts nothing, and counting it would turn every `__init__` that re-exports a
  submodule into a cycle. The other direction is kept: a package's re-exports are real
  imports, and a cycle that leaves the package (`X -> ffaa.batch -> ffaa.batch.runner -> X`)
  is a real one.

Modules are those of the packages pyproject.toml declares, so `ffaa.mids` (mids/) and
`ffaa.eval` (eval/) are in the graph under their installed names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]

def package_modules(repo: Path = REPO) -> dict[str, Path]:
    """Every module of the packages pyproject.toml declares, by installed name."""
    setuptools = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    folders = setuptools.get("package-dir", {})
    modules = {}
    for package in setuptools["packages"]:
        folder = repo / folders.get(package, package.replace(".", "/"))
        for file in sorted(folder.glob("*.py")):
            modules[package if file.name == "__init__.py" else f"{package}.{file.stem}"] = file
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, however deeply nested."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        pending.extend(ast.iter_child_nodes(node))


def _targets(name: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> Iterator[str]:
    """Dotted names an import statement of module `name` refers to."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = name if is_package else name.rpartition(".")[0]
        parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    for alias in node.names:
        full = f"{base}.{alias.name}" if base else alias.name
        yield full if full in known else base


def _ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def import_graph(sources: Mapping[str, str], packages: set[str]) -> dict[str, dict[str, int]]:
    """module -> {imported module: line of the first such import}, over the modules in
    `sources` only (the rules are in the module docstring)."""
    known = set(sources)
    graph: dict[str, dict[str, int]] = {name: {} for name in sources}
    for name, text in sources.items():
        mine = _ancestors(name)
        for node in _imports(ast.parse(text)):
            for target in _targets(name, name in packages, node, known):
                while target and target not in known:  # `import ffaa.x.Name` -> the module part
                    target = target.rpartition(".")[0]
                if not target or target == name or target in mine:
                    continue
                for reached in {target} | (_ancestors(target) - mine - {name}):
                    graph[name].setdefault(reached, node.lineno)
    return graph


def cycles(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
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
    return sorted(found)


def describe(component: list[str], graph: Mapping[str, Mapping[str, int]]) -> str:
    """One concrete loop through `component`, with the line of each import."""
    members = set(component)
    path, seen = [component[0]], {component[0]: 0}
    while True:
        here = path[-1]
        nxt = min(m for m in graph[here] if m in members)  # every member reaches the others
        if nxt in seen:
            loop = path[seen[nxt]:] + [nxt]
            return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(loop, loop[1:])) + f" -> {loop[-1]}"
        seen[nxt] = len(path)
        path.append(nxt)


def _ffaa_graph() -> dict[str, dict[str, int]]:
    modules = package_modules()
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}
    return import_graph({name: path.read_text(encoding="utf-8") for name, path in modules.items()}, packages)


def test_the_graph_covers_every_package():
    modules = package_modules()
    for name in ("ffaa.pipeline", "ffaa.backends.hf_llava", "ffaa.batch.runner", "ffaa.mids.net", "ffaa.eval.judge"):
        assert name in modules, name


def test_no_import_cycles():
    graph = _ffaa_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(describe(c, graph) for c in found)

def _graph(**sources: str) -> dict[str, dict[str, int]]:
    named = {name.replace("__", "."): text for name, text in sources.items()}
    packages = {name for name in named if any(other.startswith(name + ".") for other in named)}
    return import_graph(named, packages)


def test_runtime_imports_count_and_type_checking_ones_do_not():
    graph = _graph(
        p="",
        p__a="from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n",
        p__b="def f():\n    from .a import A\n",
    )
    assert graph["p.a"] == {} and graph["p.b"] == {"p.a": 2}
    assert cycles(graph) == []


def test_a_cycle_through_function_imports_is_found_and_named():
    graph = _graph(p="", p__a="from .b import x\n", p__b="def f():\n    from . import a\n")
    assert cycles(graph) == [["p.a", "p.b"]]
    assert describe(["p.a", "p.b"], graph) == "p.a (line 1) -> p.b (line 2) -> p.a"


def test_parent_package_rules():
    """A child importing its own package is no edge; a package's re-exports are, and so is the
    package an import of its submodule runs first."""
    graph = _graph(p="from .a import A\n", p__a="from .. import q\nfrom . import VERSION\n",
                   q="import p.a\n")
    assert graph["p.a"] == {"q": 1}  # `from . import VERSION` reads p itself: dropped
    assert graph["p"] == {"p.a": 1}
    assert graph["q"] == {"p.a": 1, "p": 1}
    assert cycles(graph) == [["p", "p.a", "q"]]
