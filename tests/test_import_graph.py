"""The import graph of hopecli, read from its source: imports at module level and inside
functions alike, since a cycle through a deferred import is still two modules that need
each other. Every import points down the stack: no loop among the modules, nothing
imports the package face (hopecli/__init__.py: the version and the lazy public API, which
sits on top of everything), and the run folder needs nothing of training but its config.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hopecli"
FACE = "hopecli"


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports anywhere in its source (a name
    imported from a package counts as its submodule when there is one of that name)."""
    files = {module_name(p, package): p for p in sorted(package.rglob("*.py"))}

    def home(name: str) -> str | None:  # the module itself, or the deepest module above it
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in files.items():
        targets = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's own package upwards
                    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        here = here.rpartition(".")[0]
                    base = f"{here}.{base}" if base else here
                targets += [f"{base}.{alias.name}" for alias in node.names]
        graph[name] = {home(t) for t in targets if t.split(".")[0] == package.name} - {name, None}
    return graph


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The sets of modules that import each other, directly or round a loop (strongly
    connected components of more than one module), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_modules_import_each_other():
    graph = import_graph(PACKAGE)
    graph.pop(FACE)  # its lazy API imports hopecli.api on first use; nothing imports it back (below)
    assert loops(graph) == []


def test_nothing_imports_the_package_face():
    """The version comes from hopecli.version, the API from hopecli.api."""
    assert sorted(m for m, targets in import_graph(PACKAGE).items() if FACE in targets) == []


def test_the_run_folder_needs_nothing_of_training_but_its_config():
    graph = import_graph(PACKAGE)
    training = {t for m, targets in graph.items() if m.startswith("hopecli.runs") for t in targets
                if t.startswith("hopecli.train")}
    assert training <= {"hopecli.train.config"}  # TrainConfig, to read config.json's train section


def test_a_loop_through_an_import_inside_a_function_is_found(tmp_path):
    package = tmp_path / "hopecli"
    (package / "eval").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "eval" / "__init__.py").write_text("")
    (package / "eval" / "metrics.py").write_text("from hopecli.eval.probe import probe_report\n")
    (package / "eval" / "probe.py").write_text("def probe_report():\n    from .metrics import run_split\n")
    (package / "leaf.py").write_text("import hopecli.eval.metrics\n")
    graph = import_graph(package)
    assert graph["hopecli.leaf"] == {"hopecli.eval.metrics"}
    assert loops(graph) == [["hopecli.eval.metrics", "hopecli.eval.probe"]]
