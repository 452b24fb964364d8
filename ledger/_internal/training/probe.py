"""``ledger probe``: which changes to a fine-tune's surroundings change its vector's bits.

Unlearning replays a fine-tune and subtracts it only if the replay's digest is
the recorded one, so an operator needs to know, before relying on it, that
the recorded settings reproduce on this machine and which outside changes
break them. The probe fine-tunes one task in fresh processes, once as
recorded and then under perturbations a deployment brings (another process,
another working directory, another hash seed, thread variables set outside,
another thread count) and compares the quantised vectors tensor by tensor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import defaults
from ledger._internal.errors import LedgerError
from ledger._internal.ops.add import derive_task_seed

PROBE_TASK = "probe"


@dataclass(frozen=True)
class Perturbation:
    """One run's surroundings. ``same_record``: the determinism record is unchanged, so the
    digest must be too; otherwise the probe only reports whether the bits moved."""

    name: str
    same_record: bool
    env: dict[str, str] = field(default_factory=dict)
    threads: int | None = None
    elsewhere: bool = False


def perturbations(threads: int) -> list[Perturbation]:
    other = 1 if threads != 1 else 2
    return [
        Perturbation("recorded settings", True),
        Perturbation("a second fresh process", True),
        Perturbation("another working directory", True, elsewhere=True),
        Perturbation("PYTHONHASHSEED=12345", True, env={"PYTHONHASHSEED": "12345"}),
        Perturbation("OMP_NUM_THREADS=1 set outside", False, env={"OMP_NUM_THREADS": "1"}),
        Perturbation("MKL_NUM_THREADS=1 set outside", False, env={"MKL_NUM_THREADS": "1"}),
        Perturbation(f"threads {other} instead of {threads}", False, threads=other),
    ]


@dataclass(frozen=True)
class Outcome:
    perturbation: Perturbation
    digest: str
    first_difference: str | None  # the first tensor, in sorted order, whose bits differ

    @property
    def reproduces(self) -> bool:
        return self.first_difference is None

    def to_json(self) -> dict[str, Any]:
        return {
            "perturbation": self.perturbation.name,
            "same_record": self.perturbation.same_record,
            "digest": self.digest,
            "same_digest": self.reproduces,
            "first_differing_tensor": self.first_difference,
        }


def _run(base: Path, data: Path, steps: int, threads: int, p: Perturbation) -> dict[str, str]:
    env = {**os.environ, **p.env}
    with tempfile.TemporaryDirectory(prefix="ulg-probe-") as elsewhere:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                __name__,
                str(base),
                str(data),
                str(steps),
                str(p.threads or threads),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=elsewhere if p.elsewhere else None,
            check=False,
        )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise LedgerError(f"the probe run '{p.name}' failed: {last}")
    digests: dict[str, str] = json.loads(proc.stdout)
    return digests


def probe(
    base: Path, data: Path, steps: int = defaults.STEPS, threads: int = defaults.THREADS
) -> list[Outcome]:
    """Each perturbation's vector against the first run's, as the task "probe" of a ledger
    with the default seed and scale would train it."""
    base, data = base.resolve(), data.resolve()
    outcomes, reference = [], None
    for p in perturbations(threads):
        digests = _run(base, data, steps, threads, p)
        if reference is None:
            reference = digests
        differing = sorted(n for n in digests if n != "" and digests[n] != reference.get(n))
        outcomes.append(Outcome(p, digests[""], differing[0] if differing else None))
    return outcomes


def _worker(base: Path, data: Path, steps: int, threads: int) -> dict[str, str]:
    """In a fresh process: the fine-tune `ledger add` runs, each tensor's digest ("" = all)."""
    from ledger._internal.data.records import load_dataset
    from ledger._internal.training.finetune import finetune
    from ledger._internal.training.spec import TrainSpec
    from ledger._internal.vectors.digest import set_digest
    from ledger._internal.vectors.vector import TaskVector

    dataset = load_dataset(data)
    spec = TrainSpec(
        method="sift",
        seed=derive_task_seed(defaults.SIGN_SEED, PROBE_TASK),
        steps=steps,
        threads=threads,
        sign_seed=defaults.SIGN_SEED,
    )
    tau = finetune(base, dataset.texts, dataset.labels, spec)
    vector = TaskVector.from_tau(tau, defaults.SCALE_BITS, "sift", defaults.SIGN_SEED)
    return {"": vector.vector_digest} | {n: set_digest({n: q}) for n, q in vector.q.items()}


if __name__ == "__main__":
    base_arg, data_arg, steps_arg, threads_arg = sys.argv[1:]
    result = _worker(Path(base_arg), Path(data_arg), int(steps_arg), int(threads_arg))
    print(json.dumps(result, sort_keys=True))
