"""The architecture (docs/architecture.md) holds: the import contracts, no import cycles, small files, commented
function-level imports, and no reference to a file outside the repository."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ncl", "ncl_kernels")
MAX_LINES = 500


def _sources():
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with the contracts of ``pyproject.toml``, on the packages under ``cwd``."""
    exe = Path(sys.executable).parent / "lint-imports"
    command = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    return subprocess.run([*command, "--no-cache", "--config", str(ROOT / "pyproject.toml")], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_contracts_catch_a_kernel_module_importing_ncl(tmp_path):
    """The same contracts on a copy of the tree where one ncl_kernels module imports ncl: lint-imports fails and
    names the contract."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    victim = tmp_path / "ncl_kernels" / "dispatch.py"
    victim.write_text(victim.read_text() + "\nfrom ncl.machine import program  # noqa: E402\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "ncl_kernels stands alone: it imports nothing from ncl BROKEN" in result.stdout
    assert "ncl_kernels.dispatch -> ncl.machine.program" in result.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in modules:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter[0]
                counter[0] += 1
                stack.append(node)
                on_stack.add(node)
            for j in range(i, len(edges[node])):
                nxt = edges[node][j]
                if nxt not in index:
                    work.append((node, j + 1))
                    work.append((nxt, 0))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
    return found


def test_no_import_cycles_between_modules():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        graph.add_import(importer=a, imported=b)
    assert _cycles(graph) == [["p.a", "p.b", "p.c"]]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_file_is_at_most_500_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines; split it along a real seam"


def _function_imports(path: Path):
    tree = ast.parse(path.read_text())
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    yield node.lineno


def test_function_level_imports_say_why():
    """An import inside a function is there for an optional dependency or start-up time, and says which in a
    comment on its line or the line above."""
    bare = []
    for path in _sources():
        lines = path.read_text().splitlines()
        for lineno in _function_imports(path):
            if "#" not in lines[lineno - 1] and "#" not in lines[lineno - 2]:
                bare.append(f"{path.relative_to(ROOT)}:{lineno}: {lines[lineno - 1].strip()}")
    assert bare == []


#: Files outside the repository that code and docs used to cite.
_OUTSIDE = re.compile(r"DESIGN[ ]§|DESIGN\.md|ENVIRONMENT\.md|\.\./shared|/work/shared")


def test_no_reference_to_a_file_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    hits = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".h", ".cuh", ".cpp", ".cu", ".sh", ".toml", ".txt", ".cfg"} \
                or name == "tests/test_architecture.py" or not path.exists():
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if _OUTSIDE.search(line):
                hits.append(f"{name}:{lineno}: {line.strip()}")
    assert hits == []
