"""The package's layering, checked statically: no import cycle and no import from a lower layer to a higher one.

Every module of ``bench/`` and ``methods/`` is parsed (nothing is imported) and every import statement
counts, at module level, inside functions and classes, and under ``if TYPE_CHECKING:`` alike (no
exemption: a type-only import still names the dependency). The layers, bottom to top:

    bench._core < bench.api < bench.data < bench.metrics < bench.store < bench.train < bench.report
    < bench.tools < bench (the public API, bench/__init__.py) < bench.cli

A module may import its own layer and the layers below it. ``methods/`` is a plugin: it may import
``bench.api`` and other ``methods`` modules only, and nothing in ``bench/`` imports it (the registry
finds it through the ``survbench.methods`` entry point). The deprecated aliases of the old flat
modules (``bench/registry.py`` ...: one ``alias(...)`` call each) are exempt, and no other module may
import them.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("bench._core", "bench.api", "bench.data", "bench.metrics", "bench.store", "bench.train", "bench.report",
          "bench.tools", "bench", "bench.cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    files = [*ROOT.glob("bench/**/*.py"), *ROOT.glob("methods/**/*.py")]
    return {module_name(p): p for p in sorted(files)}


MODULES = all_modules()


def is_alias(path: Path) -> bool:
    """A deprecated alias: a module whose only statements are its docstring, imports and one ``alias(...)`` call."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    calls = [n for n in body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)
             and getattr(n.value.func, "id", None) == "alias"]
    return len(calls) == 1 and all(isinstance(n, ast.ImportFrom) or n is calls[0] for n in body)


ALIASES = {name for name, path in MODULES.items() if is_alias(path)}


def resolve(name: str) -> str:
    """The module an imported name lives in: ``bench.api.Batch`` -> ``bench.api``; ``bench.api.model`` stays."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports_of(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported survbench module, line) for every import statement anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names] if base else []
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) ==
              "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
            targets = [str(node.args[0].value)]
        else:
            continue
        for t in targets:
            if t.split(".")[0] in ("bench", "methods") and resolve(t):
                out.append((resolve(t), node.lineno))
    return out


def layer_of(module: str) -> int | None:
    """The index in LAYERS of ``module``'s layer (None for methods)."""
    if module.split(".")[0] == "methods":
        return None
    if module == "bench":
        return LAYERS.index("bench")
    return LAYERS.index(".".join(module.split(".")[:2]))


GRAPH: dict[str, list[tuple[str, int]]] = {m: imports_of(m, p) for m, p in MODULES.items() if m not in ALIASES}


def test_the_walk_sees_the_imports_it_must():
    """The checker itself: function-local and from-imports resolve to the module that holds the name."""
    assert {"bench._core", "bench.api", "bench.data", "bench.store", "bench.train", "bench.report", "bench.tools",
            "bench.cli"} <= set(MODULES)
    assert ("bench.api.model", 0) in [(m, 0) for m, _ in GRAPH["bench.data.batches"]]
    # a function-local import is counted (bench.cli.run imports the runner inside its command)
    assert "bench.train.runner" in {m for m, _ in GRAPH["bench.cli.run"]}
    assert {"bench.registry", "bench.batches", "bench.config", "bench.features"} <= ALIASES


def test_no_upward_import():
    bad = []
    for module, imports in GRAPH.items():
        mine = layer_of(module)
        for target, line in imports:
            where = f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}"
            if target in ALIASES:
                bad.append(f"{where} (a deprecated alias; import its new home)")
            elif module.startswith("methods"):
                if not (target == "bench.api" or target.startswith("bench.api.") or target.startswith("methods")):
                    bad.append(f"{where} (a method may import bench.api and methods/ only)")
            elif target.startswith("methods"):
                bad.append(f"{where} (survbench finds methods through the registry, never by name)")
            elif layer_of(target) > mine:
                bad.append(f"{where} ({LAYERS[layer_of(target)]} is above {LAYERS[mine]})")
    assert not bad, "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node, or a node importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_modules():
    graph = {m: {t for t, _ in imports} for m, imports in GRAPH.items()}
    assert _cycles(graph) == []


def test_no_import_cycle_between_packages():
    def package(m: str) -> str:
        return "methods" if m.startswith("methods") else (m if m == "bench" else ".".join(m.split(".")[:2]))

    graph: dict[str, set[str]] = defaultdict(set)
    for module, imports in GRAPH.items():
        for target, _ in imports:
            if package(target) != package(module):
                graph[package(module)].add(package(target))
    assert _cycles(dict(graph)) == []


@pytest.mark.parametrize("text,expected", [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"a"}}, [["a"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
])
def test_cycle_finder(text, expected):
    assert _cycles(text) == expected
