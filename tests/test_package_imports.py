"""Import boundaries between the packages, checked statically with :mod:`ast` (nothing is imported).

- ``networks`` and ``transforms`` never import ``pipelines``: no ``import`` / ``from ... import`` anywhere in their
  modules (function-local ones included) and no ``importlib.import_module`` / ``__import__`` / MONAI
  ``optional_import`` of a ``pipelines`` module name.
- The modules of ``pipelines`` import each other without a cycle. The graph has an edge ``a -> b`` for every import
  that runs when ``a`` is imported (module-level statements, class bodies; not function bodies and not
  ``if TYPE_CHECKING:`` blocks) and makes Python execute ``b``: the imported module itself and the ``__init__`` of
  every package above it that is not also above ``a`` (those are already being imported when ``a`` runs);
  ``from package import name`` also reaches ``package.name`` when that is a module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
_DYNAMIC_IMPORTS = {"import_module", "__import__", "optional_import"}


# --------------------------------------------------------------------------------------------------- the checker


def package_modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file for every ``.py`` file of ``root / package`` (a package is its ``__init__``)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _absolute(module: str | None, level: int, importer: str, modules: dict[str, Path]) -> str:
    """Resolve a (possibly relative) ``from`` target as Python does for ``importer``."""
    if level == 0:
        return module or ""
    base = importer.split(".") if _is_package(importer, modules) else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_nodes(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported (skips function bodies and TYPE_CHECKING blocks)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imported_names(node: ast.Import | ast.ImportFrom, importer: str, modules: dict[str, Path]) -> list[str]:
    """Absolute dotted names an import statement refers to (``from a import b`` gives ``a`` and ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    target = _absolute(node.module, node.level, importer, modules)
    names = [alias.name for alias in node.names if alias.name != "*"]
    return ([target] if target else []) + [f"{target}.{n}" if target else n for n in names]


def dynamic_imports(tree: ast.Module) -> list[str]:
    """Module names given as string constants to ``import_module`` / ``__import__`` / ``optional_import``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in _DYNAMIC_IMPORTS:
                args = list(node.args[:1]) + [k.value for k in node.keywords if k.arg in ("name", "module")]
                found += [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return found


def forbidden_imports(root: Path, package: str, forbidden: str) -> list[str]:
    """``"<file>:<line>: <name>"`` for every import of ``forbidden`` (or a module below it) in ``package``."""
    modules = package_modules(root, package)
    hits = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in imported_names(node, name, modules):
                    if target == forbidden or target.startswith(forbidden + "."):
                        hits.append(f"{path.relative_to(root)}:{node.lineno}: {target}")
        for target in dynamic_imports(tree):
            if target == forbidden or target.startswith(forbidden + "."):
                hits.append(f"{path.relative_to(root)}: dynamic import of {target}")
    return sorted(set(hits))


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Import-time edges among the modules of ``package`` (see the module docstring)."""
    modules = package_modules(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1 + _is_package(name, modules))}
        for node in _import_time_nodes(tree):
            for target in imported_names(node, name, modules):
                if target not in modules:
                    continue
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    executed = ".".join(parts[:i])
                    if executed in modules and executed not in own_packages and executed != name:
                        graph[name].add(executed)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of ``graph``, or ``None`` (iterative depth-first search, sorted for stability)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, iters = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph.get(nxt, ()))))
    return None


# ----------------------------------------------------------------------------------------- the repository's packages


@pytest.mark.parametrize("package", ["networks", "transforms"])
def test_lower_packages_never_import_pipelines(package):
    assert len(package_modules(REPO_ROOT, package)) > 3  # the package is really scanned
    assert forbidden_imports(REPO_ROOT, package, "pipelines") == []


def test_pipelines_modules_import_each_other_without_a_cycle():
    graph = import_graph(REPO_ROOT, "pipelines")
    assert len(graph) > 20 and sum(map(len, graph.values())) > 20  # the graph is really built
    assert "pipelines.handlers.checkpoints" in graph["pipelines.predictors.folder"]  # a known edge
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle among the modules of pipelines: " + " -> ".join(cycle)


# ------------------------------------------------------------------------------ the checker on packages made here


def _write_package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_checker_finds_forbidden_imports_of_every_form(tmp_path):
    _write_package(tmp_path, {
        "low/__init__.py": "from .a import f\n",
        "low/a.py": "import torch\n\ndef f():\n    from pipelines.handlers import load_weights\n",
        "low/b.py": "import importlib\nM = importlib.import_module('pipelines.cli')\n",
        "low/c.py": "from monai.utils import optional_import\nx, _ = optional_import('pipelines')\nimport pipelinesx\n",
        "low/d.py": "from .. import pipelines\n",  # relative import beyond the package: resolves to 'pipelines'
    })
    assert forbidden_imports(tmp_path, "low", "pipelines") == [
        "low/a.py:4: pipelines.handlers",
        "low/a.py:4: pipelines.handlers.load_weights",
        "low/b.py: dynamic import of pipelines.cli",
        "low/c.py: dynamic import of pipelines",
        "low/d.py:1: pipelines",
    ]


def test_checker_finds_cycles_through_relative_imports_and_package_inits(tmp_path):
    _write_package(tmp_path, {
        "top/__init__.py": "",
        "top/x/__init__.py": "from .m import g\n",  # importing top.x runs top/x/__init__, which imports top.x.m
        "top/x/m.py": "from ..y.n import h\n\ndef g():\n    from ..z import k\n",  # function-local: not an edge
        "top/y/__init__.py": "",
        "top/y/n.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from top.z import k\nimport top.x\n",
        "top/z.py": "from .x import m\n",
    })
    graph = import_graph(tmp_path, "top")
    assert graph == {
        "top": set(),
        "top.x": {"top.x.m"},
        "top.x.m": {"top.y", "top.y.n"},
        "top.y": set(),
        "top.y.n": {"top.x"},
        "top.z": {"top.x", "top.x.m"},
    }
    assert find_cycle(graph) == ["top.x", "top.x.m", "top.y.n", "top.x"]
    graph["top.y.n"].clear()
    assert find_cycle(graph) is None
