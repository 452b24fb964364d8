"""plan_add and plan_unlearn, the writes as functions of their inputs: no files, no lock,
no journal to set up."""

from __future__ import annotations

import numpy as np

from ledger import TaskVector
from ledger._internal.folder.store import TaskRow
from ledger._internal.ops.add import Trained, plan_add
from ledger._internal.ops.unlearn import plan_unlearn
from ledger._internal.training.spec import TrainSpec
from ledger._internal.vectors.state import Tip
from ledger.fixedpoint import set_digest


def _trained(task_id: str, values: list[float]) -> Trained:
    spec = TrainSpec(method="ft", seed=1, threads=2, sign_seed=0)
    tau = {"w": np.array(values, dtype=np.float32)}
    vector = TaskVector.from_tau(tau, 10, "ft", 0)
    return Trained(task_id, "ab" * 32, 3, spec, {"spec": spec.to_dict()}, vector)


def test_the_plan_is_the_exact_merge_of_the_tip_and_the_vector() -> None:
    state = {"w": np.array([5, -7, 0], dtype=np.int64)}
    before = set_digest(state)
    tip = Tip(4, state, before, ["zed", "alpha"])
    trained = _trained("mid", [1.0, -0.5, 0.25])
    plan = plan_add(trained, tip, "2026-12-03T00:00:00Z", [])
    assert plan.merged["w"].tolist() == [5 + 1024, -7 - 512, 256]  # q = round(τ · 2^10)
    event = plan.event.to_json()
    assert event["seq"] == 4 and event["active_after"] == ["alpha", "mid", "zed"]
    assert event["state_digest_before"] == before
    assert event["state_digest_after"] == set_digest(plan.merged)
    assert "readds" not in event
    assert (plan.row.task_id, plan.row.status, plan.row.add_seq) == ("mid", "active", 4)


def test_an_announced_re_add_carries_the_deletions_it_reverses() -> None:
    state = {"w": np.zeros(2, dtype=np.int64)}
    readds = [{"task_id": "gone", "unlearn_seq": 2}]
    plan = plan_add(_trained("back", [1.0, 2.0]), Tip(3, state, set_digest(state), []), "t", readds)
    assert plan.event.to_json()["readds"] == readds


def test_unlearning_the_planned_add_gives_back_the_state_bit_for_bit() -> None:
    state = {"w": np.array([5, -7, 0], dtype=np.int64)}
    before = set_digest(state)
    trained = _trained("mid", [1.0, -0.5, 0.25])
    added = plan_add(trained, Tip(4, state, before, ["zed", "alpha"]), "t1", [])
    rows = [
        TaskRow("zed", "ft", "active", 1, None, "cd" * 32, "sha256:z", None),
        TaskRow("alpha", "ft", "active", 2, None, "ef" * 32, "sha256:a", None),
        added.row,
    ]
    after = added.event.state_digest_after
    gone = plan_unlearn(
        added.row, trained.vector, Tip(5, added.merged, after, ["alpha", "mid", "zed"]), rows, "t2"
    )
    assert set_digest(gone.merged) == before
    event = gone.event.to_json()
    assert event["state_digest_after"] == before and event["state_digest_before"] == after
    assert [t.task_id for t in gone.remaining] == event["active_after"] == ["alpha", "zed"]
    assert (gone.row.status, gone.row.unlearn_seq) == ("unlearned", 5)
