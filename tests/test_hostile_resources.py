"""Hostile files cost a reader neither memory nor time (FORMAT.md §1, §2, §5).

Each attack is a folder crafted from a genuine tiny ledger; `ledger status` must
refuse it within 5 s with a peak RSS within 2x of the genuine folder's. Peak RSS
is measured in a fresh process started by a small launcher: a child forked from
this test process (which holds torch) would inherit its high-water mark.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from tests.helpers import BIN

_LAUNCHER = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "err = p.stderr.read().decode()\n"
    "print(usage.ru_maxrss, os.waitstatus_to_exitcode(status), err.strip(), sep='\\n')\n"
)


def _peak(*args: str | Path) -> tuple[int, int, str, float]:
    """Peak RSS (KiB), exit code, stderr and wall time of one command."""
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n", 2)
    return int(out[0]), int(out[1]), out[2].strip(), time.monotonic() - start


def _sparse_state(led: Path) -> None:
    """A 4 GB state file that costs no disk: reading it whole would cost 4 GB of memory."""
    os.truncate(led / "state.safetensors", 4 << 30)


def _state_claims_a_huge_tensor(led: Path) -> None:
    header = b'{"x":{"dtype":"I64","shape":[536870912],"data_offsets":[0,4294967296]}}'
    header += b" " * (-len(header) % 8)
    (led / "state.safetensors").unlink()
    (led / "state.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)


def _state_header_length_huge(led: Path) -> None:
    data = bytearray((led / "state.safetensors").read_bytes())
    data[:8] = struct.pack("<Q", 1 << 40)
    (led / "state.safetensors").unlink()
    (led / "state.safetensors").write_bytes(bytes(data))


def _payload_200_mib(led: Path) -> None:
    """Compresses to a few MB of DuckDB file; fetching it would cost hundreds of MB."""
    con = duckdb.connect(str(led / "ledger.duckdb"))
    con.execute("UPDATE events SET payload = repeat('x', 200 * 1024 * 1024) WHERE seq = 1")
    con.close()


ATTACKS: dict[str, tuple[Callable[[Path], object], str]] = {
    "sparse-4gb-state": (_sparse_state, "its header accounts for"),
    "state-header-claims-a-4gb-tensor": (_state_claims_a_huge_tensor, "its header accounts for"),
    "state-header-length-1tb": (_state_header_length_huge, "exceeds the file or the cap"),
    "200-mib-payload-in-a-small-database": (_payload_200_mib, "over FORMAT.md §5's cap"),
}


@pytest.fixture(scope="module")
def genuine(
    tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, key: Path, task_data: dict[str, Path]
) -> tuple[Path, int]:
    from ledger.cli import main

    led = tmp_path_factory.mktemp("resources") / "led"
    for args in (
        ["init", led, "--base", tiny_base, "--key", key],
        ["add", led, "--task", "a", "--data", task_data["a"], "--steps", "2"],
    ):
        main([str(a) for a in args])
    rss, code, err, _ = _peak(BIN / "ledger", "status", led, "--json")
    assert code == 0, err
    return led, rss


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_status_refuses_a_hostile_file_within_bounds(
    genuine: tuple[Path, int], tmp_path: Path, attack: str
) -> None:
    source, genuine_rss = genuine
    led = Path(shutil.copytree(source, tmp_path / "led"))
    tamper, needle = ATTACKS[attack]
    tamper(led)
    rss, code, err, seconds = _peak(BIN / "ledger", "status", led, "--json")
    assert code == 1 and err.startswith("error: ") and needle in err, err
    assert "\n" not in err
    assert rss <= 2 * genuine_rss, f"peak RSS {rss} KiB against {genuine_rss} KiB genuine"
    assert seconds < 5, f"took {seconds:.1f} s"
