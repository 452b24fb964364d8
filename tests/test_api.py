"""The public API: what it exports, the README's example, and the import rules it rests on."""

from __future__ import annotations

import ast
import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ledger
from tests.helpers import BIN

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


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[doctest.TestResults, Path]:
    """The README's example run as written, in an empty folder: its ledger is kept."""
    folder = tmp_path_factory.mktemp("readme")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        result = doctest.testfile(str(ROOT / "README.md"), module_relative=False, verbose=False)
    return result, folder / "led"


def test_the_readme_example_runs(readme_run: tuple[doctest.TestResults, Path]) -> None:
    result, _ = readme_run
    assert result.attempted >= 10 and result.failed == 0


def test_the_auditors_sql_runs_on_a_real_ledger(
    readme_run: tuple[doctest.TestResults, Path],
) -> None:
    """Every query docs/SQL.md gives, on the README's ledger (alice added, then unlearned)."""
    import duckdb

    queries = re.findall(r"```sql\n(.*?)```", (ROOT / "docs" / "SQL.md").read_text(), re.S)
    config: dict[str, str | bool | int | float | list[str]] = {
        "enable_external_access": False,
        "lock_configuration": True,
    }
    with duckdb.connect(str(readme_run[1] / "ledger.duckdb"), read_only=True, config=config) as con:
        rows = [con.execute(q).fetchall() for q in queries]
    adds, deletions, readds, active, rotations, heads = rows
    assert [(seq, task) for seq, task, *_ in adds] == [(1, "alice")]
    assert [(s, t, cert) for s, t, _, _, cert in deletions] == [
        (2, "alice", "certificates/2.dsse.json")
    ]
    assert readds == [] and rotations == []
    assert [a for *_, a in active] == ['["alice"]', "[]"]
    assert [size for size, *_ in heads] == [1, 2, 3]


def test_every_public_name_resolves_and_is_listed() -> None:
    assert sorted(ledger.__all__) == sorted(ledger._WHERE)
    for name in ledger.__all__:
        assert getattr(ledger, name) is not None
    with pytest.raises(AttributeError):
        _ = ledger.no_such_name


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


def test_the_readme_shows_the_user_suite_as_it_runs() -> None:
    """The README's property example is a verbatim part of tests/test_user_suite.py."""
    readme = (ROOT / "README.md").read_text()
    shown = readme.split("tests/test_user_suite.py`", 1)[1].split("```python\n", 1)[1]
    assert shown.split("```", 1)[0].strip() in (ROOT / "tests" / "test_user_suite.py").read_text()


def test_the_readme_walk_runs_as_written(tmp_path: Path) -> None:
    """Every line of the README's "Using it" block, in an empty folder, as a user types it."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Using it\n\n```\n", 1)[1].split("```", 1)[0]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for line in block.strip().splitlines():
        run = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, (line, run.stderr)
    assert (tmp_path / "served-alice" / "config.json").is_file()
    assert (tmp_path / "ulg-state").is_dir()
