"""The package's layout: no import cycles between its modules, and the modules that need
no torch import without it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "salcli"
# Modules a user may import on a machine without torch (metrics to score maps, the
# options and errors to read a run's settings).
TORCH_FREE = ("salcli", "salcli.metrics", "salcli.errors", "salcli.options", "salcli.defaults")
BLOCK_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed")
sys.meta_path.insert(0, NoTorch())
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
print("torch" in sys.modules)
"""


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The salcli modules ``path`` imports, wherever in it (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != "salcli"}


def test_no_module_imports_one_that_imports_it_back():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = path[path.index(d) :] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


@pytest.mark.parametrize("name", TORCH_FREE)
def test_imports_without_torch(name):
    r = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, name], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


ROOT = PACKAGE.parent
# where the scripts find the names they import: the package, tests/ and benchmarks/
SCRIPT_PATHS = (ROOT, ROOT / "tests", ROOT / "benchmarks")
SCRIPTS = sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("scripts/*.py")])


def _local_module(name: str) -> bool:
    top = name.split(".")[0]
    return top == "salcli" or any((d / f"{top}.py").is_file() for d in SCRIPT_PATHS[1:])


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_scripts_import_names_that_exist(script, monkeypatch):
    """Benchmarks are not run by the suite: every name they import from salcli, tests/
    or benchmarks/ (wherever in them, functions included) must still be there after the
    modules move."""
    import importlib

    for path in SCRIPT_PATHS:
        monkeypatch.syspath_prepend(str(path))
    missing = []
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not _local_module(node.module):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                if not hasattr(module, alias.name) and importlib.util.find_spec(name) is None:
                    missing.append(name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _local_module(alias.name):
                    importlib.import_module(alias.name)
    assert not missing, f"{script.name} imports what is not there: {', '.join(missing)}"
