"""Distillation end to end with real parts (local Ray, an MLflow store in a temp dir, GunPoint): a teacher's soft
labels made once per search and shared with every trial, a distilled student exported, retrained and written as
ONNX, and `emule distill` linking a new search to the one that taught it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search.cli import main
from search.delivery.export import export, retrain
from search.driver.checks import parse_spec
from search.driver.runner import run_search
from search.driver.teacher_search import resolve_search_teacher
from search.front.yardstick import best_by_validation
from search.record.searches import load_search, write_candidates
from search.record.tracking import Tracker
from search.spec.metrics import SIZE
from search.trial.candidate import load_weights
from search.trial.teacher import teacher_refs

pytestmark = pytest.mark.slow

FOLDS = 3
ROOT = Path(__file__).resolve().parents[1]


def _raw(tmp: Path, name: str, trials: int, **extra) -> dict:
    raw = {"name": name, "data": {"name": "gunpoint", "cv_folds": FOLDS}, "baselines": [],
           "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                          {"metric": "params", "mode": "min", "reference": 1e6, "log": True}],
           "space": {"width": [8, 16], "depth": 1, "heads": 1, "patch_len": [16, 32]},
           "training": {"epochs": 2, "batch_size": 16},
           "search": {"sampler": "random", "trials": trials, "concurrency": 2, "seed": 0,
                      "storage": str(tmp / "runs")},
           "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "distill"}}
    raw.update(extra)
    return raw


@pytest.fixture(scope="module")
def searches(ray_local, tmp_path_factory):
    """A plain search, its best candidate exported and trained as the teacher, then a search distilling from it
    with distill_alpha searched."""
    tmp = tmp_path_factory.mktemp("distill")
    home = os.getcwd()
    os.chdir(tmp)  # the caches (.emule/...) land here, not in the checkout
    try:
        first = run_search(parse_spec(_raw(tmp, "plain", 3)), name="plain-run", out=io.StringIO())
        tracker = Tracker(f"sqlite:///{tmp / 'mlflow.db'}", "distill")
        record = load_search(tracker, "plain-run")
        best = best_by_validation(record.front.members + record.front.others)
        (teacher,) = write_candidates(tracker, record, [best], tmp / "teacher")
        retrain(teacher, teacher.with_suffix(".pt"), log=lambda m: None)
        raw = _raw(tmp, "student", 2, distill={"teacher": str(teacher), "alpha": 0.5, "temperature": 2.0})
        raw["space"] = {**raw["space"], "width": [8], "distill_alpha": {"low": 0.3, "high": 0.9}}
        out = io.StringIO()
        second = run_search(parse_spec(raw), name="student-run", out=out)
    finally:
        os.chdir(home)
    return tmp, tracker, first, second, teacher, out.getvalue()


def test_soft_labels_are_made_once_on_the_driver_for_every_fold_and_the_refit(searches):
    tmp, _, _, second, _, out = searches
    assert second.status == "complete" and second.finished == 2
    # one teacher per fold trained, the refit's labels from the teacher's own weights; none by a trial
    assert f"1 teacher(s) x ({FOLDS} folds + refit), {FOLDS} of {FOLDS + 1} teacher models trained now" in out
    assert out.count("teacher soft labels:") == 1
    assert len(list((tmp / ".emule" / "soft_labels").glob("*.npy"))) == FOLDS + 1


def test_every_student_records_its_teacher_and_alpha(searches):
    _, tracker, _, second, teacher, _ = searches
    parent = tracker.run(second.parent_run_id).data
    assert parent.params["distill.alpha"] == "0.5" and parent.tags["emule.teacher"] == teacher.stem
    for run in tracker.candidates(second.parent_run_id):
        assert run.info.status == "FINISHED" and "test_accuracy" in run.data.metrics
        cand = tracker.candidate(run.info.run_id)
        assert 0.3 <= cand["training"]["distill_alpha"] <= 0.9
        assert float(run.data.params["distill_alpha"]) == cand["training"]["distill_alpha"]
        (ref,) = cand["distill"]["teachers"]
        assert ref["source"] == str(teacher) and ref["weights"] == str(teacher.with_suffix(".pt"))


def test_a_distilled_student_is_exported_retrained_and_written_as_onnx(searches):
    tmp, tracker, _, _, _, _ = searches
    home = os.getcwd()
    os.chdir(tmp)
    try:
        (path, *_) = export(tracker, "student-run", tmp / "students")
        doc = yaml.safe_load(path.read_text())
        assert doc["distill"]["teachers"] and "distilled (alpha" in doc["source"]["fit"]
        cached = len(list((tmp / ".emule" / "soft_labels").glob("*.npy")))
        assert main(["train", str(path)]) == 0  # the refit's soft labels come from the search's cache
        assert len(list((tmp / ".emule" / "soft_labels").glob("*.npy"))) == cached
        model = load_weights(path.with_suffix(".pt"))
        assert sum(p.numel() for p in model.parameters()) == doc["source"]["metrics"][SIZE]
        assert main(["export", str(path), "--format", "onnx"]) == 0
        assert path.with_suffix(".onnx").is_file()
    finally:
        os.chdir(home)


def test_a_student_without_its_teachers_soft_labels_is_refused(searches, tmp_path):
    tmp, tracker, _, _, _, _ = searches
    (path, *_) = export(tracker, "student-run", tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc.pop("distill")
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match="names no teacher"):
        retrain(path, tmp_path / "w.pt", log=lambda m: None)


def test_emule_distill_reruns_the_front_with_the_best_as_teacher_and_links_the_searches(searches):
    tmp, tracker, first, _, _, _ = searches
    # the real command line, in its own process (and its own local Ray)
    proc = subprocess.run([sys.executable, "-m", "search.cli", "distill", "plain-run", "--alpha", "0.7",
                           "--search-name", "plain-distilled", "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}",
                           "--experiment", "distill", "--num-cpus", "2", "-q"], cwd=tmp, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "teacher soft labels:" in proc.stdout
    plain, distilled = load_search(tracker, "plain-run"), load_search(tracker, "plain-distilled")
    tags = tracker.run(distilled.parent_id).data.tags
    assert tags["emule.distilled_from"] == "plain-run" and tags["emule.distilled_from_run"] == first.parent_run_id
    best = best_by_validation(plain.front.members + plain.front.others)
    assert tags["emule.teacher"] == f"plain-run-{best.trial_id}"
    students = tracker.candidates(distilled.parent_id)
    # the front members, each once more, now with the teacher
    assert sorted(json.dumps(tracker.candidate(r.info.run_id)["model"], sort_keys=True) for r in students) == \
        sorted(json.dumps(tracker.candidate(r.run_id)["model"], sort_keys=True) for r in plain.front.members)
    assert all(tracker.candidate(r.info.run_id)["training"]["distill_alpha"] == 0.7 for r in students)
    assert distilled.front.members


def test_the_top_k_of_a_search_teach_as_an_ensemble(searches, tmp_path):
    tmp, tracker, _, _, _, _ = searches
    spec = parse_spec(_raw(tmp, "ensemble", 1, distill={"teacher": {"search": "plain-run", "top": 2}}))
    resolved, tags = resolve_search_teacher(spec, tracker, tmp_path)
    record = load_search(tracker, "plain-run")
    ranked = sorted(record.front.members + record.front.others,
                    key=lambda r: (-r.metrics["val_accuracy"], r.metrics[SIZE]))
    assert resolved.distill.teacher == [str(tmp_path / f"plain-run-{r.trial_id}.yaml") for r in ranked[:2]]
    assert tags["emule.distilled_from"] == "plain-run" and len(tags["emule.teacher"].split(",")) == 2
    assert len(teacher_refs(resolved)) == 2


def test_emule_distill_refuses_a_bad_alpha_before_anything_starts(searches, capsys, tmp_path, monkeypatch):
    tmp, _, _, _, _, _ = searches
    monkeypatch.chdir(tmp_path)
    code = main(["distill", "plain-run", "--alpha", "2", "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}",
                 "--experiment", "distill"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("emule distill: distill.alpha: 2") and "\n" not in err
    assert not any(tmp_path.iterdir())  # nothing written

