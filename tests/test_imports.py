"""Import structure (docs/architecture.md, "Dependency rule"): no import cycle among the
project's modules, and imports point only down the layers.

The rule the tests hold the code to:

- Every import counts, at module level or inside a function: a function-level (lazy) import
  defers loading a module, not the dependency on it, so it may not close a cycle either.
- Module-level imports are also checked at run time: each module is imported first, alone,
  in a fresh interpreter state (a forked child of a subprocess that has imported nothing of
  the project), where a module-level cycle entered from the wrong side fails.
- A module's implicit import of its parent packages is not an edge (Python runs a package's
  ``__init__`` before its modules); an explicit ``from nmrladder.runtime import Denoiser`` is
  an edge to the package ``nmrladder.runtime``.

The modules are found from pyproject.toml's package-dir map, so a new package is covered.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Edges allowed to close a cycle, each with the reason (none today).
ALLOWED_CYCLE_EDGES: dict[tuple[str, str], str] = {}

#: What each layer may import besides itself (docs/architecture.md): export -> train ->
#: runtime -> kernels. The root package ``nmrladder`` (its version) may be imported by all;
#: its command-line modules (cli, demo, __main__) sit above every layer.
LAYERS = {
    "nmrladder.kernels": set(),
    "nmrladder.runtime": {"nmrladder.kernels"},
    "nmrladder.train": {"nmrladder.runtime", "nmrladder.kernels"},
    "nmrladder.export": {"nmrladder.train", "nmrladder.runtime", "nmrladder.kernels"},
}


def package_dirs() -> dict[str, Path]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(ROOT / "pyproject.toml", "rb") as f:
        mapping = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    return {package: ROOT / folder for package, folder in mapping.items()}


def project_modules() -> dict[str, Path]:
    """Module name -> source file of every Python module of the project's packages."""
    packages = package_dirs()
    modules = {}
    for package, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            # a folder mapped to its own package is not a module of the parent's folder
            if not any(name.startswith(other + ".") or name == other
                       for other in packages if other != package and other.startswith(package)):
                modules[name] = path
    return modules


def imports_of(name: str, path: Path, modules: dict) -> tuple[set[str], set[str]]:
    """(module-level, function-level) project modules that module ``name`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: tuple[set[str], set[str]] = (set(), set())

    def target(module: str, member: str | None) -> str | None:
        if member is not None and f"{module}.{member}" in modules:
            return f"{module}.{member}"
        return module if module in modules else None

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names: list[str | None] = []
            if isinstance(child, ast.Import):
                names = [target(alias.name, None) for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([child.module] if child.module else []))
                names = [target(base, alias.name) for alias in child.names]
            found[1 if lazy else 0].update(n for n in names if n and n != name)
            visit(child, inner)

    visit(tree, False)
    return found


def import_graphs() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module-level graph, graph of every import) over the project's modules."""
    modules = project_modules()
    top, every = {}, {}
    for name, path in modules.items():
        eager, lazy = imports_of(name, path, modules)
        top[name], every[name] = eager, eager | lazy
    return top, every


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def without_allowed(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {a: {b for b in targets if (a, b) not in ALLOWED_CYCLE_EDGES}
            for a, targets in graph.items()}


# --------------------------------------------------------------------------- the checker itself


def test_the_cycle_finder_finds_known_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e", "d"}, "f": {"g"},
             "g": {"f"}}
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["f", "g"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_imports_are_read_at_module_and_function_level(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(textwrap.dedent("""
        import nmrladder.runtime.errors
        from nmrladder.runtime import scaling, Denoiser
        from . import table
        try:
            from .io import read_spectrum
        except ImportError:
            pass

        def later():
            from nmrladder.runtime.preprocess import median
            return lambda: __import__("os")

        class Thing:
            from nmrladder.runtime import atomic
    """))
    modules = dict.fromkeys(["nmrladder.runtime", "nmrladder.runtime.errors",
                             "nmrladder.runtime.scaling", "nmrladder.runtime.table",
                             "nmrladder.runtime.io", "nmrladder.runtime.preprocess",
                             "nmrladder.runtime.atomic", "nmrladder.runtime.m"])
    eager, lazy = imports_of("nmrladder.runtime.m", source, modules)
    assert eager == {"nmrladder.runtime.errors", "nmrladder.runtime.scaling",
                     "nmrladder.runtime", "nmrladder.runtime.table", "nmrladder.runtime.io",
                     "nmrladder.runtime.atomic"}
    assert lazy == {"nmrladder.runtime.preprocess"}


# --------------------------------------------------------------------------- the project


def test_the_project_modules_are_all_found():
    modules = project_modules()
    for name in ("nmrladder.cli", "nmrladder.kernels", "nmrladder.runtime.pipeline",
                 "nmrladder.train.evaluate", "nmrladder.export.exporter"):
        assert name in modules
    assert not any(name.startswith("nmrladder.runtime.runtime") for name in modules)


def test_module_level_imports_form_no_cycle():
    top, _ = import_graphs()
    assert cycles(top) == []


def test_no_cycle_even_with_function_level_imports():
    _, every = import_graphs()
    assert cycles(without_allowed(every)) == []
    for (a, b), reason in ALLOWED_CYCLE_EDGES.items():  # an allowance that is no longer needed
        assert b in every.get(a, ()), f"{a} -> {b} is gone: remove its allowance ({reason})"


def test_imports_point_down_the_layers():
    _, every = import_graphs()

    def layer(module: str) -> str | None:
        return next((name for name in LAYERS if module == name or module.startswith(name + ".")),
                    None)

    wrong = []
    for source, targets in every.items():
        home = layer(source)
        if home is None:
            continue  # the root package's command-line modules sit above every layer
        for target in targets:
            there = layer(target)
            if there is not None and there != home and there not in LAYERS[home]:
                wrong.append(f"{source} -> {target}")
            if there is None and target not in ("nmrladder",):
                wrong.append(f"{source} -> {target}")  # a layer importing the command line
    assert wrong == []


CHILD_IMPORTS = r"""
import importlib, json, os, sys, traceback
import numpy, scipy.signal  # shared by every child; nothing of the project is imported here
try:
    import torch  # noqa: F401
except ImportError:
    pass
failed = {}
for name in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if not (err.name or "").startswith("nmrladder"):
                os._exit(3)  # an optional dependency this environment lacks
            traceback.print_exc()
            os._exit(1)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 3):
        failed[name] = code
print(json.dumps(failed))
"""


def import_each(modules: list[str], **run_options) -> dict[str, int]:
    """Import each module first and alone (CHILD_IMPORTS): the ones that failed, exit codes."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD_IMPORTS, json.dumps(modules)],
        capture_output=True,
        text=True,
        timeout=540,
        **run_options,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@needs_fork
def test_a_module_level_cycle_fails_the_fresh_import(tmp_path):
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from cyclic.b import B\nA = 1\n")
    (package / "b.py").write_text("from cyclic.a import A\nB = 2\n")
    (package / "c.py").write_text("from cyclic.a import A\n")
    (package / "d.py").write_text("import json\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    failed = import_each(["cyclic.a", "cyclic.b", "cyclic.c", "cyclic.d"], env=env, cwd=tmp_path)
    assert failed == {"cyclic.a": 1, "cyclic.b": 1, "cyclic.c": 1}


@needs_fork
@pytest.mark.timeout(600)
def test_every_module_imports_first_and_alone_in_a_fresh_interpreter():
    modules = sorted(name for name in project_modules() if not name.endswith("__main__"))
    assert import_each(modules, cwd=ROOT) == {}
