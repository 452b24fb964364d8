"""Exact unlearning's cost: against retraining the other tasks, and against learning.

SIFT-Masks unlearns one task of T by replaying that task alone; the masks of
TALL-masks, EMR or TIES change with the task set, so they refit all T − 1
others. Both sides are timed here in one run:

- unlearn: ``ledger unlearn`` in a fresh process, as an operator runs it
  (interpreter, torch and model start-up included);
- retrain: the sum of the T − 1 other tasks' own ``ledger.add_task`` seconds,
  measured when the ledger was built, all in one process (torch loaded once,
  no start-up per task): the cheapest a refit of T − 1 fine-tunes can be,
  so the ratio errs against SIFT-Masks.

replay / add compares ``ledger unlearn`` with the ``ledger add`` of the same
task, both fresh processes at the same T, as the sum of the unlearns' seconds
over the sum of the adds': both are the same fine-tune after the same
start-up, so one slow pair on a shared machine should move the figure by its
share of the time, not decide a median of three.
"""

from __future__ import annotations

import statistics

import ledger
from benchmarks.common import Figure, Workspace, cli, timed


def figures(work: Workspace) -> list[Figure]:
    out: list[Figure] = []
    for model, tasks in work.settings.unlearn_models:
        out += _model_figures(work, model, tasks)
    return out


def _model_figures(work: Workspace, model: str, tasks: int) -> list[Figure]:
    built = work.take(model, tasks)
    others = [f"t{i}" for i in range(tasks - 1)]
    retrain = sum(built.add_seconds[t] for t in others)
    certificates = work.root / f"certificates-{built.root.name}"
    certificates.mkdir()

    def unlearn(task: str) -> float:
        cert = certificates / f"{task}.dsse.json"
        args = ("--task", task, "--data", built.data[task], "--certificate", cert)
        return cli("ledger", "unlearn", built.root, *args)

    # The last in-process task first, then add/unlearn pairs: every unlearn sees T tasks.
    unlearns = [unlearn(f"t{tasks - 1}")]
    adds: list[float] = []
    for pair in range(work.settings.pairs):
        task, data = f"p{pair}", work.task_file(tasks + pair)
        built.data[task] = data
        adds.append(cli("ledger", "add", built.root, "--task", task, "--data", data))
        unlearns.append(unlearn(task))
    # The same unlearn without the process start-up, for what start-up costs.
    index = tasks + work.settings.pairs
    work.add_in_process(built, "q", index)
    cert = certificates / "q.dsse.json"
    in_process = timed(lambda: ledger.unlearn_task(built.root, "q", built.data["q"], cert))
    unlearn_s = statistics.median(unlearns)
    need = 0.8 * (tasks - 1)
    timings = {
        "unlearn_cli_s": round(unlearn_s, 3),
        "retrain_sum_s": round(retrain, 3),
        "add_in_process_median_s": round(
            statistics.median(built.add_seconds[t] for t in others), 3
        ),
    }
    return [
        Figure(
            f"unlearn_vs_retrain_all_{model}_T{tasks}",
            retrain / unlearn_s,
            f">= {need:g}",
            f"sum of the T-1={tasks - 1} other tasks' in-process add_task seconds over the "
            f"median `ledger unlearn` (fresh process, start-up included) of {len(unlearns)}",
            timings,
        ),
        Figure(
            f"unlearn_vs_retrain_all_{model}_T{tasks}_in_process",
            retrain / in_process,
            f">= {need:g}",
            "the same, unlearn through ledger.unlearn_task in this process (no start-up): "
            "what the fresh-process figure loses to interpreter and torch start-up",
            {"unlearn_in_process_s": round(in_process, 3)},
        ),
        Figure(
            f"replay_vs_add_{model}",
            sum(unlearns[1:]) / sum(adds),
            "<= 1.05",
            f"`ledger unlearn` / `ledger add` of the same tasks, fresh processes, T={tasks}; "
            f"summed over {len(adds)} interleaved pairs",
            {
                "add_cli_median_s": round(statistics.median(adds), 3),
                "unlearn_cli_median_s": round(statistics.median(unlearns[1:]), 3),
            },
        ),
    ]
