"""The cost preview (`emule plan`, `emule search --dry-run`) and the out-of-proportion warning: closed-form costs
over the space's corners, the samples a trial processes, and a run of the real CLI that starts no Ray."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search.driver.checks import load_spec, parse_spec
from search.driver.plan import OUT_OF_PROPORTION, corners, plan_lines, proportion_warning, workload
from search.trial.candidate import spec_dataset

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = yaml.safe_load((ROOT / "spaces" / "quickstart.yaml").read_text())


def spec_with(**changes):
    raw = copy.deepcopy(QUICKSTART)
    for section, values in changes.items():  # the space is replaced, other sections amended
        raw[section] = values if section == "space" else {**raw.get(section, {}), **values}
    return parse_spec(raw)


# OSULeaf's silhouette in 1-pixel patches is 1024 tokens; in 16- or 32-pixel ones, 4 or 1
LOPSIDED = {"space": {"attention": "softmax", "depth": 1, "width": [16, 32, 128], "heads": 1, "patch_len": 64,
                      "image_patch": [1, 16, 32]}}


def test_corners_are_every_choice_and_each_range_bound():
    spec = spec_with(space={"attention": ["softmax", "linear"], "depth": {"low": 1, "high": 3}, "width": 16,
                            "heads": 1, "patch_len": 16})
    found = corners(spec, spec_dataset(spec))
    assert sorted((c.values["attention"], c.values["depth"]) for c in found) == [
        ("linear", 1), ("linear", 3), ("softmax", 1), ("softmax", 3)]
    flops = {(c.values["attention"], c.values["depth"]): c.flops for c in found}
    assert flops[("softmax", 3)] > flops[("softmax", 1)]


@pytest.mark.parametrize("cv_folds", [5, "holdout"])
def test_a_trial_trains_every_fold_and_the_refit(cv_folds):
    spec = spec_with(data={"cv_folds": cv_folds}, space={"width": 16, "data_fraction": {"low": 0.25, "high": 1.0}},
                     training={"epochs": 10})
    data = spec_dataset(spec)
    pool = len(data.train) + len(data.val)
    fit_rows = (cv_folds - 1) * pool if cv_folds == 5 else len(data.train)  # what the folds learn from, together
    work = workload(spec, data)
    assert work.trained == (int(10 * 0.25 * (fit_rows + pool)), 10 * (fit_rows + pool))
    assert work.models == (cv_folds + 1 if cv_folds == 5 else 2)
    assert work.evaluated == 10 * (pool if cv_folds == 5 else len(data.val)) + len(data.test)


def test_a_fold_ensemble_trains_no_refit():
    spec = spec_with(data={"cv_folds": 5}, space={"width": 16}, training={"epochs": 10, "final": "fold_ensemble"})
    data = spec_dataset(spec)
    work = workload(spec, data)
    assert work.models == 5 and work.trained == (10 * 4 * len(data.pool),) * 2
    assert "the fold models kept as the ensemble (no refit)" in plan_lines(spec, calibrate_time=False)[0]


def test_a_seed_ensemble_trains_a_refit_per_seed():
    spec = spec_with(data={"cv_folds": 5}, space={"width": 16},
                     training={"epochs": 10, "final": "seed_ensemble", "ensemble_seeds": 3})
    data = spec_dataset(spec)
    work = workload(spec, data)
    assert work.models == 5 + 3 and work.trained == (10 * (4 + 3) * len(data.pool),) * 2
    assert "+ 3 refits on every training row from consecutive seeds, averaged" in plan_lines(
        spec, calibrate_time=False)[0]


def test_an_out_of_proportion_corner_is_warned_and_a_flops_cap_silences_it():
    spec = spec_with(**LOPSIDED)
    warning = proportion_warning(spec)
    assert warning is not None and "\n" not in warning
    assert warning.startswith("warning: the costliest corner of the space (attention=softmax, depth=1, width=128, "
                              "heads=1, patch_len=64, image_patch=1)")
    assert "constraints.max_flops" in warning and f"{OUT_OF_PROPORTION:g}x the median" in warning
    cap = float(warning.split("constraints.max_flops (e.g. ")[1].split(",")[0])
    assert proportion_warning(spec_with(**LOPSIDED, constraints={"max_flops": cap})) is None


@pytest.mark.parametrize("path", sorted((ROOT / "spaces").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_specs_are_not_warned(path):
    assert proportion_warning(load_spec(path)) is None


RUNNER = """
import contextlib, io, json, sys
from search.cli import main
out = {}
for argv in (["plan", sys.argv[1]], ["search", sys.argv[1], "--dry-run"]):
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        code = main(argv)
    out[argv[0]] = {"code": code, "stdout": text.getvalue()}
out["ray"] = "ray" in sys.modules
print(json.dumps(out))
"""


@pytest.mark.slow
def test_dry_run_prints_the_cost_table_and_starts_nothing(tmp_path):
    raw = copy.deepcopy(QUICKSTART)
    raw.update(space={**LOPSIDED["space"], "data_fraction": [0.5, 1.0]}, training={"epochs": 3, "batch_size": 16},
               tracking={"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "plan"})
    spec = tmp_path / "lopsided.yaml"
    spec.write_text(yaml.safe_dump(raw))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(spec)], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    import json

    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not out["ray"]  # no Ray imported, let alone started
    assert not any(cwd.iterdir()) and not (tmp_path / "mlflow.db").exists()  # nothing written
    for command in ("plan", "search"):
        lines = out[command]["stdout"].splitlines()
        assert out[command]["code"] == 0
        assert lines[0].startswith(f"plan quickstart: {QUICKSTART['search']['trials']} trials, 2 at a time")
        assert lines[1].startswith("9 corners of the space (")
        header = next(line for line in lines if "FLOPs/sample" in line)
        assert header.split() == ["params", "FLOPs/sample", "training", "FLOPs/trial", "time/trial", "(est.)"]
        rows = {line.split()[0]: line.split() for line in lines if line.split()[:1] in (["cheapest"], ["median"],
                                                                                          ["costliest"])}
        assert set(rows) == {"cheapest", "median", "costliest"}
        assert float(rows["costliest"][2]) > float(rows["cheapest"][2])  # FLOPs per sample
        assert any(line.startswith("time per trial: training steps timed on this machine") for line in lines)
        assert any(line.startswith("warning: the costliest corner") for line in lines)
        assert lines[-1] == "nothing was started; run it with `emule search`"


def test_a_distilled_spec_names_the_teacher_trainings_it_adds(tmp_path):
    from search.trial.candidate import resolve

    spec = parse_spec({"name": "t", "data": {"name": "gunpoint", "cv_folds": 3}, "baselines": [],
                       "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0}],
                       "space": {"width": [8], "patch_len": 16, "heads": 1, "depth": 1}})
    data = spec_dataset(spec)
    (tmp_path / "teacher.yaml").write_text(yaml.safe_dump(resolve(spec, {}, data.modalities, 2).to_dict()))
    distilled = parse_spec({**spec.model_dump(exclude_none=True), "distill": {"teacher": "teacher.yaml"}},
                           base_dir=tmp_path)
    assert "1 teacher(s) x (3 fold(s) + refit) teacher trainings" in plan_lines(distilled, calibrate_time=False)[-2]
    assert not any("distillation" in line for line in plan_lines(spec, calibrate_time=False))


def test_sub_second_trials_show_tenths_not_zero(monkeypatch):
    """Small data on a fast machine trains a trial in under a second: the estimate says how much, never "0s"."""
    from search.driver import plan

    monkeypatch.setattr(plan, "time_corners", lambda shown, *a, **k: [plan.Timing(1e12, 32)] * len(shown))
    spec = parse_spec({"name": "t", "data": {"name": "italypowerdemand", "cv_folds": "holdout"}, "baselines": [],
                       "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0}],
                       "space": {"width": [8, 16], "patch_len": 8, "heads": 1, "depth": 1},
                       "training": {"epochs": 2}})
    lines = plan.plan_lines(spec)
    rows = [line.split() for line in lines if line.split()[:1] in (["cheapest"], ["median"], ["costliest"])]
    assert rows and all(row[-1] in ("<0.1s",) or row[-1].startswith("0.") for row in rows), rows
    assert not any(" 0s" in line for line in lines)
