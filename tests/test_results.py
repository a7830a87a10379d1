"""search.spec.results, the trial contract: the metric/bookkeeping split, the outcome tags, and that no other module
of search/ spells a contract key as a string literal (so a rename is one edit)."""

from __future__ import annotations

import math
import re
from pathlib import Path

from search.spec import results as r

SEARCH = Path(__file__).resolve().parents[1] / "search"
# Tune's own names (done, trial_id ...) are Tune's; the rest are ours and spelled once.
CONTRACT = (r.BOOKKEEPING - r.TUNE_KEYS) | set(r.STATIC) | {
    r.SAMPLES_SEEN, r.PRETRAIN_SAMPLES, r.TRAINING_COMPUTE, r.REFIT_COMPUTE, r.TRAIN_SAMPLES, r.WORK_TIME_S,
    r.FEASIBLE_TAG, r.FAILURE_TAG}


def test_no_module_of_search_spells_a_contract_key():
    names = "|".join(map(re.escape, sorted(CONTRACT)))
    quoted = re.compile(f"""["']({names})["']""")
    # dict(budget_done=True) spells a key too; ``device=device`` is an argument of torch and of our functions
    keyword = re.compile(f"\\b({names.replace('device|', '')})=(?!=)")
    found = []
    for path in sorted(SEARCH.rglob("*.py")):
        if path.name == "results.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if (quoted.search(line) or keyword.search(line)) and not line.strip().startswith("#"):
                found.append(f"{path.relative_to(SEARCH)}:{n}: {line.strip()}")
    assert not found, "spell these through search.spec.results:\n" + "\n".join(found)


def test_metrics_leave_out_bookkeeping_tune_keys_and_config_columns():
    result = {"epoch": 3, "val_accuracy": 0.8, "param_count": 1000, "budget_done": True, "infeasible": False,
              "node_id": "n1", "device": "cpu", "gpu_ids": "0", "error": "", "violations": "", "replayed": True,
              "timed_out": False, "trial_id": "t1", "done": True, "time_total_s": 4.2, "training_iteration": 3,
              "config": {"width": 16}, "config/width": 16, "samples_seen": 300, "work_time_s": 4.0}
    assert r.metrics_of(result) == {"val_accuracy": 0.8, "param_count": 1000, "samples_seen": 300,
                                    "work_time_s": 4.0}
    numbers = r.numbers_of({**result, "note": "text", "flag": True, "diverged": math.nan})
    assert set(numbers) == {"val_accuracy", "param_count", "samples_seen", "work_time_s", "config/width", "diverged"}
    assert all(isinstance(v, float) for v in numbers.values())


def test_outcome_tags_of_each_way_a_trial_ends():
    where = {"node_id": "n1", "device": "cuda", "gpu_ids": "0"}
    assert r.ended_tags({**where, "budget_done": True}) == {
        "budget_done": "true", "feasible": "true", "device": "cuda", "gpu_ids": "0"}
    assert r.ended_tags({**where, "budget_done": True}, with_node=True) == {
        "budget_done": "true", "feasible": "true", "device": "cuda", "gpu_ids": "0", "node_id": "n1"}
    # nothing said, nothing tagged: no empty tags on a run's page
    assert r.ended_tags({"epoch": 1, "gpu_ids": "", "device": "cpu"}, with_node=True) == {
        "budget_done": "false", "feasible": "true", "device": "cpu"}
    assert r.ended_tags({**where, "infeasible": True, "violations": "flops 2e+09 > 1e+09"}) == {
        "budget_done": "false", "feasible": "false", "device": "cuda", "gpu_ids": "0",
        "violations": "flops 2e+09 > 1e+09"}
    assert r.timed_out_tags({**where, "timed_out": True, "error": "timeout: past 5 s"}, with_node=True) == {
        "budget_done": "false", "feasible": "true", "failure": "timeout", "error": "timeout: past 5 s",
        "device": "cuda", "gpu_ids": "0", "node_id": "n1"}
    assert r.error_tags("x" * 6000) == {"budget_done": "false", "failure": "error", "error": "x" * 5000}
