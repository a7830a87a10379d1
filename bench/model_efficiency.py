"""How small can it get: the best candidate of a search against the smallest one within 1 point of it, with and
without distillation, on OSULeaf and PLAID.

Per set and search seed:
1. a search for validation accuracy against parameters over a size-spanning space (width 8-64, depth 1-2, softmax
   or linear attention, the recipe that paid in recipe.md: per-sample normalisation, light augmentation, label
   smoothing 0.1), TPE, ``--trials`` candidates of ``--epochs`` epochs, ``--folds``-fold selection;
2. ``emule distill`` of it: its best-by-validation candidate (``--top K``: its K best, an ensemble whose logits
   are averaged) teaches its front members, each run once more with
   the teacher's soft labels (alpha ``--alpha``, temperature ``--temperature``) - a new search;
3. with ``--cross-fit K``, the same distillation once more with cross-fitted soft labels (each training row
   labelled by one of K teacher models that did not learn from it) - a third search, beside the second.
Reported: the best-by-validation candidate's test accuracy (its refit on every training row) and size; the
smallest candidate whose test accuracy lies within 1 point of it, among the plain search's finished candidates
and among the distilled students; the parameter ratio (best / smallest); each front member's test accuracy with
and without the teacher; batch-1 latency of the best and of the smallest, in ONNX Runtime beside torch (one
thread each; latency does not depend on the weights' values, so the models are built from their configs).
Target (issue 12): a candidate within 1 point of the best at <= 1/20 of its parameters on both sets.

Results are written after every (set, seed), so an interrupted run still leaves what it measured; ``--resume``
keeps the (set, seed) runs already in ``--out``'s JSON and measures only the others (e.g. more seeds).

    python bench/model_efficiency.py --seeds 3 --out bench/results/model_efficiency.md
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.spec.metrics import SIZE  # noqa: E402

SETS = ("osuleaf", "plaid")
WITHIN = 0.01  # "within 1 point" of the best's test accuracy
TARGET_RATIO = 20.0


def spec_for(name: str, seed: int, trials: int, epochs: int, folds: int, tmp: Path) -> dict:
    """Sizes from a few thousand to about a hundred thousand parameters; patch lengths give about 24 and 12
    tokens per series."""
    from emule_models.data import load_builtin

    length = min(m.length for m in load_builtin(name).modalities if m.kind == "series")
    return {
        "name": f"eff-{name}",
        "data": {"name": name, "cv_folds": folds},
        "baselines": [],
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": SIZE, "mode": "min", "reference": 1e6, "log": True}],
        "space": {"attention": ["softmax", "linear"], "depth": {"low": 1, "high": 2}, "width": [8, 16, 32, 64],
                  "heads": [1, 2], "patch_len": sorted({max(2, length // t) for t in (24, 12)}),
                  "lr": {"low": 1e-3, "high": 5e-3, "log": True},
                  "series_norm": ["sample"], "augment": ["light"], "label_smoothing": [0.1]},
        "training": {"epochs": epochs, "batch_size": 32},
        "search": {"sampler": "tpe", "trials": trials, "concurrency": 2, "seed": seed, "storage": str(tmp / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "efficiency"},
    }


def smallest_within(records: list, reference: float):
    """The candidate with the fewest parameters whose test accuracy is at least ``reference - WITHIN``."""
    close = [r for r in records if r.metrics["test_accuracy"] >= reference - WITHIN - 1e-12]
    return min(close, key=lambda r: (r.metrics[SIZE], -r.metrics["test_accuracy"])) if close else None


def latency(tracker, run_id: str, dataset, tmp: Path) -> dict[str, float]:
    """Batch-1 latency (median ms) in ONNX Runtime and torch, one thread each; the ONNX file is checked against
    torch on real test rows by ``search.delivery.deploy.to_onnx``."""
    import torch

    from search.delivery.deploy import check_rows, masked_series, to_onnx
    from search.trial.candidate import Candidate, build_seeded

    torch.set_num_threads(1)
    model = build_seeded(Candidate.from_dict(tracker.candidate(run_id))).eval()
    check = to_onnx(model, tmp / f"{run_id}.onnx", check_rows(dataset), masked_series(dataset),
                    list(dataset.classes), threads=1)
    return {"onnx_ms": check.onnx_ms, "torch_ms": check.torch_ms, "max_abs_diff": check.max_abs_diff}


def _summary(r) -> dict:
    return {"trial": r.trial_id, "run_id": r.run_id, "params": int(r.metrics[SIZE]),
            "val": r.metrics["val_accuracy"], "test": r.metrics["test_accuracy"],
            "model": {k: v for k, v in r.params.items() if k in ("attention", "depth", "width", "heads",
                                                                  "patch_len")}}


def run_one(name: str, seed: int, args, tmp: Path) -> dict:
    from search.delivery.distill import distill_spec
    from search.driver.checks import parse_spec
    from search.driver.runner import run_search
    from search.front import yardstick
    from search.record.tracking import Tracker
    from search.trial.candidate import load_section

    start = time.perf_counter()
    spec = parse_spec(spec_for(name, seed, args.trials, args.epochs, args.folds, tmp))
    plain_name = f"eff-{name}-{seed}"
    run_search(spec, name=plain_name, out=io.StringIO())
    tracker = Tracker(spec.tracking.uri, spec.tracking.experiment)
    plain = tracker.search_state(tracker.find_search(plain_name), spec.objectives)
    plain_s = time.perf_counter() - start
    finished = list(plain.finished.values())
    best = yardstick.best_by_validation(finished)
    ref = best.metrics["test_accuracy"]
    small = smallest_within(finished, ref)
    dataset = load_section(spec.data)
    # the same configs with and without the teacher: front members by their model
    key = lambda r: json.dumps({k: r.params.get(k) for k in sorted(r.params) if "." not in k  # noqa: E731
                                and not k.startswith("distill")}, sort_keys=True)
    before = {key(r): r for r in plain.front.members}
    lat = {"best": latency(tracker, best.run_id, dataset, tmp)}
    if small is not None:
        lat["smallest"] = latency(tracker, small.run_id, dataset, tmp)
    row = {"set": name, "seed": seed, "folds": spec.data.cv_folds, "finished": len(finished),
           "best": _summary(best), "smallest": _summary(small) if small else None, "latency": lat,
           "plain_s": plain_s}
    arms = [("distilled", "", 1)] + ([("crossfit", "_crossfit", args.cross_fit)] if args.cross_fit > 1 else [])
    for arm, suffix, k in arms:  # "distilled" keeps its old keys ("pairs", "students", "teacher_line")
        distilled_spec, text = distill_spec(tracker, "efficiency", plain_name, args.alpha, args.temperature,
                                            top=args.top, students_dir=tmp / f"students-{arm}", cross_fit=k)
        out = io.StringIO()
        run_search(distilled_spec, spec_text=text, name=f"{plain_name}-{arm}", out=out)
        taught = list(tracker.search_state(tracker.find_search(f"{plain_name}-{arm}"), spec.objectives)
                      .finished.values())
        small_taught = smallest_within(taught, ref)
        if small_taught is not None:
            lat[f"smallest_{arm}"] = latency(tracker, small_taught.run_id, dataset, tmp)
        row.update({f"smallest_{arm}": _summary(small_taught) if small_taught else None,
                    f"students{suffix}": len(taught),
                    f"pairs{suffix}": [{"params": int(before[key(b)].metrics[SIZE]),
                                        "plain": before[key(b)].metrics["test_accuracy"],
                                        "distilled": b.metrics["test_accuracy"]} for b in taught if key(b) in before],
                    f"teacher_line{suffix}": next((ln for ln in out.getvalue().splitlines()
                                                   if ln.startswith("teacher soft labels:")), "")})
    return {**row, "wall_s": time.perf_counter() - start}


def _ratio(run: dict, which: str) -> float | None:
    return run["best"]["params"] / run[which]["params"] if run.get(which) else None


def _ms(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.3f}" + (f" +- {statistics.pstdev(xs):.3f}" if len(xs) > 1 else "")


def report(runs: list[dict], args, wall_s: float, planned: int) -> str:
    lines = ["# How small can it get: the best candidate against the smallest within 1 point, with and without "
             "distillation", "", "Recorded with:", "",
             f"    {' '.join(['python', 'bench/model_efficiency.py', *sys.argv[1:]])}", "",
             f"{len(runs)} of {planned} (set, seed) runs finished in {wall_s / 60:.0f} min on this 2-core machine "
             "(shared with other work). Per set and seed: a search of "
             f"{args.trials} candidates x {args.epochs} epochs (TPE; attention softmax/linear, depth 1-2, width "
             f"8-64, heads 1-2, two patch lengths, learning rate; the recipe of recipe.md: per-sample normalisation, "
             f"light augmentation, label smoothing 0.1), {args.folds}-fold selection, then `emule distill` of it: its "
             + ("best-by-validation candidate teaches" if args.top == 1 else
                f"{args.top} best candidates by validation, an ensemble (logits averaged), teach")
             + f" its front members (alpha {args.alpha:g}, temperature "
             f"{args.temperature:g}; soft labels per fold from a teacher trained without the fold's validation rows). "
             "Test accuracy is the refit's (every training row). 'Smallest within 1 point': the candidate with the "
             "fewest parameters whose test accuracy is at least the best's minus 0.01 (the best itself when none "
             "is smaller). Latency: batch 1, one thread, median of 50 calls, ONNX Runtime beside torch (eager).", "",
             *([f"The report was written again from the run's JSON (`python bench/model_efficiency.py --from-json "
                f"{args.from_json.name} ...`); the measurements are that run's.", ""] if args.from_json else []),
             "| set | seed | best: test | params | smallest within 1 pt (plain): test | params | ratio | "
             "smallest within 1 pt (distilled): test | params | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        cells = []
        for which in ("smallest", "smallest_distilled"):
            s = r.get(which)
            cells += ([f"{s['test']:.3f}", str(s["params"]), f"{_ratio(r, which):.1f}x"] if s else ["none", "", ""])
        lines.append(f"| {r['set']} | {r['seed']} | {r['best']['test']:.3f} | {r['best']['params']} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Target: a candidate within 1 point of the best at <= 1/20 of its parameters (ratio >= 20x) on "
              "both sets; HAT's published 3.7x is the anchor.", ""]
    for name in sorted({r["set"] for r in runs}):
        mine = [r for r in runs if r["set"] == name]
        ratios = [max(_ratio(r, w) or 0 for w in ("smallest", "smallest_distilled", "smallest_crossfit"))
                  for r in mine]
        met = sum(x >= TARGET_RATIO for x in ratios)
        lines.append(f"- {name}: ratio {', '.join(f'{x:.1f}x' for x in ratios)} over {len(mine)} seed(s); target "
                     f"met on {met} of {len(mine)}")
    lines += ["", "Each front member with and without the teacher (same config, same seed; test accuracy):", "",
              "| set | seed | params | plain | distilled | change |", "|---|---:|---:|---:|---:|---:|"]
    deltas = []
    for r in runs:
        # a config the search proposed twice trains to the same numbers (same seed): counted once
        unique = {(p["params"], p["plain"], p["distilled"]): p for p in r["pairs"]}.values()
        for p in sorted(unique, key=lambda p: p["params"]):
            deltas.append(p["distilled"] - p["plain"])
            lines.append(f"| {r['set']} | {r['seed']} | {p['params']} | {p['plain']:.3f} | {p['distilled']:.3f} | "
                         f"{p['distilled'] - p['plain']:+.3f} |")
    if deltas:
        lines += ["", f"Mean change from distillation over {len(deltas)} distinct front members: "
                  f"{statistics.mean(deltas):+.3f} ({sum(d > 0 for d in deltas)} up, {sum(d < 0 for d in deltas)} "
                  "down)."]
    crossed = [r for r in runs if "pairs_crossfit" in r]
    if crossed:
        lines += ["", f"Cross-fitted soft labels (`--cross-fit {args.cross_fit}`: each training row labelled by one of "
                  "that many teacher models that did not learn from it), beside in-sample ones (the teacher learned "
                  "the rows it labels), in the same run:", "",
                  "| set | seed | smallest within 1 pt (cross-fitted): test | params | ratio |",
                  "|---|---:|---:|---:|---:|"]
        for r in crossed:
            s = r.get("smallest_crossfit")
            cells = [f"{s['test']:.3f}", str(s["params"]), f"{_ratio(r, 'smallest_crossfit'):.1f}x"] if s else \
                ["none", "", ""]
            lines.append(f"| {r['set']} | {r['seed']} | " + " | ".join(cells) + " |")
        lines += ["", "| set | seed | params | plain | in-sample | cross-fitted | cross-fitted - plain |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        changes = {"in-sample": [], "cross-fitted": []}
        for r in crossed:
            inside = {(p["params"], p["plain"]): p["distilled"] for p in r["pairs"]}
            unique = {(p["params"], p["plain"], p["distilled"]): p for p in r["pairs_crossfit"]}.values()
            for p in sorted(unique, key=lambda p: p["params"]):
                ins = inside.get((p["params"], p["plain"]))
                changes["cross-fitted"].append(p["distilled"] - p["plain"])
                if ins is not None:
                    changes["in-sample"].append(ins - p["plain"])
                lines.append(f"| {r['set']} | {r['seed']} | {p['params']} | {p['plain']:.3f} | "
                             f"{'' if ins is None else f'{ins:.3f}'} | {p['distilled']:.3f} | "
                             f"{p['distilled'] - p['plain']:+.3f} |")
        lines += [""] + [f"Mean change from {arm} distillation over these members: {statistics.mean(d):+.3f} "
                         f"({sum(x > 0 for x in d)} up, {sum(x < 0 for x in d)} down)." for arm, d in changes.items()
                         if d]
    lines += ["", "Batch-1 latency (ms; ONNX Runtime / torch eager, one thread):", "",
              "| set | model | params (mean over seeds) | onnxruntime | torch |", "|---|---|---:|---:|---:|"]
    for name in sorted({r["set"] for r in runs}):
        mine = [r for r in runs if r["set"] == name]
        for which in ("best", "smallest", "smallest_distilled", "smallest_crossfit"):
            have = [r for r in mine if which in r["latency"]]
            if have:
                params = [r[which]["params"] for r in have]
                lines.append(f"| {name} | {which.replace('_', ' ')} ({len(have)} seeds) | "
                             f"{statistics.mean(params):.0f} | "
                             f"{_ms([r['latency'][which]['onnx_ms'] for r in have])} | "
                             f"{_ms([r['latency'][which]['torch_ms'] for r in have])} |")
    lines += ["", "Per run:", ""]
    for r in runs:
        lines.append(f"- {r['set']} seed {r['seed']}: {r['finished']} candidates, {r['students']} students, "
                     f"{r['folds']}-fold; best {r['best']['model']} val {r['best']['val']:.3f}; plain search "
                     f"{r['plain_s']:.0f} s, all {r['wall_s']:.0f} s; {r['teacher_line']}"
                     + (f"; cross-fitted: {r['teacher_line_crossfit']}" if r.get("teacher_line_crossfit") else ""))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--top", type=int, default=1, help="the teacher: the plain search's K best, an ensemble")
    ap.add_argument("--cross-fit", type=int, default=1, metavar="K",
                    help="K >= 2: also distil with cross-fitted soft labels (K teacher models per fold), beside")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--resume", action="store_true", help="keep the runs already in --out's JSON, measure the rest")
    ap.add_argument("--from-json", type=Path, default=None, metavar="JSON",
                    help="only write the report again from a run's JSON (e.g. after a change to the report)")
    ap.add_argument("--command", default=None, help="with --from-json: the command that measured it")
    ap.add_argument("--minutes", type=float, default=None, help="with --from-json: how long that run took")
    args = ap.parse_args()
    if args.from_json:
        runs = json.loads(args.from_json.read_text())
        if args.command:
            sys.argv = ["", *args.command.split()[2:]]  # the report shows the measuring command
        text = report(runs, args, 60 * (args.minutes or 0), args.seeds * len(args.sets))
        (args.out or args.from_json.with_suffix(".md")).write_text(text)
        return
    args.out = args.out.resolve() if args.out else None  # before the chdir below
    if args.resume and not (args.out and args.out.with_suffix(".json").exists()):
        ap.error("--resume needs --out whose .json holds an earlier run")
    import os

    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    start = time.perf_counter()
    runs = json.loads(args.out.with_suffix(".json").read_text()) if args.resume else []
    with tempfile.TemporaryDirectory(prefix="emule-efficiency-") as tmp:
        os.chdir(tmp)  # caches (.emule/...) stay out of the checkout
        for seed in range(args.seeds):  # seed-major: a cut run still covers both sets
            for name in args.sets:
                if any(r["set"] == name and r["seed"] == seed for r in runs):
                    continue
                runs.append(run_one(name, seed, args, Path(tmp)))
                r = runs[-1]
                print(f"{name} seed {seed}: best test {r['best']['test']:.3f} ({r['best']['params']} params), "
                      f"{r['wall_s']:.0f} s", flush=True)
                text = report(runs, args, time.perf_counter() - start, args.seeds * len(args.sets))
                if args.out:
                    args.out.write_text(text)
                    args.out.with_suffix(".json").write_text(json.dumps(runs, indent=1, default=str))
    ray.shutdown()
    print(text)


if __name__ == "__main__":
    main()
