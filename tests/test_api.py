"""The public API: what it exports, the README's example, and the import rules it rests on."""

from __future__ import annotations

import ast
import doctest
import subprocess
import sys
from pathlib import Path

import pytest

import ledger

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> list[str]:
    """Every module a file imports, at any depth (deferred imports hide cycles too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = doctest.testfile(str(ROOT / "README.md"), module_relative=False, verbose=False)
    assert result.attempted >= 10 and result.failed == 0


def test_every_public_name_resolves_and_is_listed() -> None:
    assert sorted(ledger.__all__) == sorted(ledger._WHERE)
    for name in ledger.__all__:
        assert getattr(ledger, name) is not None
    with pytest.raises(AttributeError):
        _ = ledger.no_such_name  # type: ignore[attr-defined]


@pytest.mark.parametrize("folder", ["audits", "benchmarks"])
def test_audits_and_benchmarks_use_only_the_public_api(folder: str) -> None:
    internal = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / folder).rglob("*.py")
        for name in _imports(path)
        if name.startswith("ledger._internal")
    }
    assert internal == set()


def test_the_verifier_imports_nothing_from_ledger() -> None:
    """By its source, and in a fresh process that runs every verifier module's imports."""
    files = sorted((ROOT / "verifier").glob("*.py"))
    offending = {
        f"{path.name}: {name}"
        for path in files
        for name in _imports(path)
        if name == "ledger" or name.startswith("ledger.")
    }
    assert offending == set()
    modules = ", ".join(_module(path) for path in files)
    probe = f"import sys, {modules}; print(sorted(m for m in sys.modules if m[:6] == 'ledger'))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_import_cycles() -> None:
    """Among the project's own modules, counting imports inside functions."""
    paths = [p for pkg in ("ledger", "verifier") for p in (ROOT / pkg).rglob("*.py")]
    modules = {_module(p): p for p in paths}
    graph = {
        name: {m for m in _imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    graph["ledger"] = set()  # its names resolve lazily (PEP 562), on first use only
    cycles, state = [], dict.fromkeys(graph, 0)  # 0 new, 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state[nxt] == 1:
                cycles.append(" → ".join([*path[path.index(nxt) :], nxt]))
            elif state[nxt] == 0:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if state[node] == 0:
            visit(node, [node])
    assert cycles == []
