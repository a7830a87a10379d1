"""The search-quality benchmark's bookkeeping (bench/trace.py, bench/peers.py): compute charged per result,
candidates admitted on ``budget_done``, hypervolume by hand; the Syne Tune space from a spec. Pure Python."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.trace import Trace  # noqa: E402
from search.driver.checks import parse_spec  # noqa: E402


def spec(tmp: Path):
    return parse_spec({
        "name": "trace", "data": {"name": "osuleaf"}, "baselines": [],
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "param_count", "mode": "min", "reference": 1e6, "log": True}],
        "space": {"attention": ["softmax", "linear"], "depth": {"low": 1, "high": 2}, "width": [16, 32],
                  "lr": {"low": 1e-3, "high": 3e-3, "log": True}},
        "attention_options": {"linear": {}},
        "training": {"epochs": 2},
        "search": {"storage": str(tmp / "runs")},
    })


def row(epoch: int, compute: float, acc: float, params: float, done: bool = False) -> dict:
    return {"epoch": epoch, "training_compute": compute, "val_accuracy": acc, "param_count": params,
            "budget_done": done}


def test_compute_is_charged_by_increments_and_candidates_admitted_when_done(tmp_path):
    trace = Trace(spec(tmp_path), budget=100.0, label="t")
    trace.result("a", row(1, 10, 0.3, 1e4))
    trace.result("b", row(1, 30, 0.6, 1e5))
    trace.result("a", row(2, 20, 0.5, 1e4, done=True))  # +10
    trace.result("a", {"done": True})  # Tune's bare last result: no compute, no second admission
    assert trace.compute == 50 and not trace.spent()  # 10 + 30 + 10
    # A alone, minimised (-0.5, 4) against the reference (0, 6): 0.5 x 2 = 1.0
    assert trace.points[-1] == (50, pytest.approx(trace.points[-1][1]), pytest.approx(1.0))
    trace.result("b", row(2, 60, 0.8, 1e5, done=True))  # +30
    # A and B (-0.8, 5): 1.0 + 0.8 x 1 - the overlap 0.5 x 1 = 1.3
    assert [p[0] for p in trace.points] == [0, 50, 80]
    assert trace.points[-1][2] == pytest.approx(1.3)
    trace.result("c", row(1, 35, 0.1, 1e3))
    assert trace.compute == 115 and trace.spent()
    run = trace.run("random", 0, "osuleaf")
    assert (run.trials, run.full, run.final_hv) == (3, 2, pytest.approx(1.3))
    # the step function: HV reached by x FLOPs
    assert run.hv_at(np.array([0, 49, 50, 79, 80, 1e9]), 0).tolist() == pytest.approx([0, 0, 1.0, 1.0, 1.3, 1.3])


def test_infeasible_and_stopped_trials_cost_what_they_trained(tmp_path):
    trace = Trace(spec(tmp_path), budget=100.0, label="t")
    trace.result("infeasible", {"epoch": 0, "val_accuracy": 0.0, "param_count": 5e5, "infeasible": True})
    trace.result("stopped", row(1, 25, 0.2, 1e4))
    assert trace.compute == 25 and trace.points == [(0.0, 0.0, 0.0)]


def test_syne_tune_space_follows_the_spec(tmp_path):
    pytest.importorskip("syne_tune")
    from syne_tune.config_space import Categorical, Float, Integer

    from bench.peers import syne_config_space

    raw = spec(tmp_path).model_dump(mode="json")
    raw["attention_options"] = {"performer": {"features": [16, 32]}}
    raw["space"]["attention"] = ["softmax", "performer"]
    space = syne_config_space(parse_spec(raw))
    assert isinstance(space["attention"], Categorical) and space["attention"].categories == ["softmax", "performer"]
    assert isinstance(space["depth"], Integer) and (space["depth"].lower, space["depth"].upper) == (1, 2)
    assert isinstance(space["lr"], Float) and (space["lr"].lower, space["lr"].upper) == (1e-3, 3e-3)
    assert space["performer.features"].categories == [16, 32]  # sampled always, used when performer is picked
