"""Peak memory of ``verifier audit`` over one model's int64 size, at two T ten times apart.

An audit recomputes Q from every retained vector; streaming them keeps the
peak near a few models whatever T, and a peak that grows with T means the
verifier holds the vectors. For the tiny model one int64 model is about half
a megabyte, so the interpreter and its libraries dominate the raw ratio: the
second figure subtracts the peak of ``verifier --help`` (the interpreter and
the verifier's imports, no ledger read). Only a model of MiniLM's size makes
the ratio say something about the audit's own arrays, so the tiny model gives
only the figure that does not depend on that scale, T=20 over T=2 (its peaks
are in that figure's details). The quick run trains MiniLM's tasks for 2
steps: the audit reads vectors, it does not train.
"""

from __future__ import annotations

from benchmarks.common import BIN, Figure, Workspace, peak_rss, trainable_parameters


def _audit_peak(work: Workspace, model: str, tasks: int, steps: int) -> int:
    built = work.ledger(model, tasks, steps)
    args = ("audit", "--ledger", built.root, "--public-key", f"{work.key}.pub", "--json")
    code, peak = peak_rss(BIN / "verifier", *args)
    if code != 0:
        raise RuntimeError(f"verifier audit exited {code} on a {tasks}-task {model} ledger")
    return peak


def figures(work: Workspace) -> list[Figure]:
    _, help_peak = peak_rss(BIN / "verifier", "--help")
    out: list[Figure] = []
    for model, small, large, steps in work.settings.rss_runs:
        out += _model_figures(work, model, (small, large), steps, help_peak)
    return out


def _model_figures(
    work: Workspace, model: str, tasks: tuple[int, int], steps: int, help_peak: int
) -> list[Figure]:
    model_bytes = trainable_parameters(work.base(model)) * 8
    peaks = {t: _audit_peak(work, model, t, steps) for t in tasks}
    small, large = tasks
    out: list[Figure] = []
    for t, peak in peaks.items() if model != "tiny" else ():
        out.append(
            Figure(
                f"verify_peak_rss_over_model_{model}_T{t}",
                peak / model_bytes,
                "<= 3",
                f"peak RSS of `verifier audit` (fresh process) over trainable params x 8, "
                f"{model} model, {t} tasks of {steps} steps",
                {
                    "peak_rss_MiB": round(peak / 2**20, 1),
                    "model_int64_MiB": round(model_bytes / 2**20, 3),
                },
            )
        )
        out.append(
            Figure(
                f"verify_peak_rss_minus_help_over_model_{model}_T{t}",
                (peak - help_peak) / model_bytes,
                "<= 3",
                f"the same peak less that of `verifier --help` "
                f"({help_peak / 2**20:.0f} MiB: interpreter and imports)",
                {"help_peak_rss_MiB": round(help_peak / 2**20, 1)},
            )
        )
    out.append(
        Figure(
            f"verify_peak_rss_{model}_T{large}_over_T{small}",
            peaks[large] / peaks[small],
            "<= 1.1",
            f"'about equal': peak RSS at T={large} over T={small} (1.1: 10% for noise)",
            {
                **{f"peak_rss_T{t}_MiB": round(p / 2**20, 1) for t, p in peaks.items()},
                "model_int64_MiB": round(model_bytes / 2**20, 3),
                "help_peak_rss_MiB": round(help_peak / 2**20, 1),
            },
        )
    )
    return out
