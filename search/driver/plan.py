"""What a search will cost, before any compute: `emule plan SPEC` (= `emule search SPEC --dry-run`) and the one-line
warning `emule search` prints when one corner of the space is out of proportion. Starts no Ray, writes nothing.

Costs come from the closed forms of ``emule_models.cost`` over the corners of the model space (every choice, each
range's two bounds; ``search.driver.checks.space_corners``), and from what a trial does with the spec's data: it
trains one model per selection fold for ``training.epochs`` on its ``data_fraction`` of the fold's rows (the early
epochs on a share of them under ``search.data_fidelity``), then
refits on every training row, pretraining each first for ``pretrain_epochs`` (on all their rows and the unlabelled
ones). Training FLOPs count 3 x the forward FLOPs per sample seen, as a trial's ``training_compute`` does (the refit
included here). The time per trial is those FLOPs (plus one forward per validation and test row) over the speed of
timed training steps of that corner on this machine, with the trial's threads (``search.cpus_per_trial``).

The warning rule: among the corners the constraints leave trainable (``constraints.max_flops``, ``max_params``),
the costliest needs more than ``OUT_OF_PROPORTION`` x the forward FLOPs per sample of the median corner, or more
than ``TOO_COSTLY_FLOPS`` (a model far from small: about 2.5 ResNet-50 forwards per sample).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from emule_models import ModelConfig
from emule_models.cost import forward_flops, param_count
from emule_models.data import Dataset
from emule_models.train import FOLD_ENSEMBLE, SEED_ENSEMBLE, share_at
from search.driver.checks import space_corners
from search.driver.progress import duration
from search.spec.fidelity import search_schedule
from search.spec.schema import MODEL_KEYS, OPTION_SEP, Spec, Training, choices
from search.trial.candidate import resolve, spec_dataset
from search.trial.validation import HOLDOUT, describe, scheme, selection_folds

OUT_OF_PROPORTION = 100.0  # costliest / median forward FLOPs per sample
TOO_COSTLY_FLOPS = 1e10  # forward FLOPs per sample
SUGGESTED_CAP = 10.0  # the warning suggests constraints.max_flops at this multiple of the median corner
CALIBRATION_S = 0.3  # timed training steps per calibrated corner (after one warm-up step)
LONGEST_STEP_S = 2.0  # a predicted step longer than this is timed at a smaller batch
UNTIMED_STEP_S = 10.0  # ... and one still longer at batch 1 is not timed: extrapolated from a cheaper corner


@dataclass
class Corner:
    values: dict[str, Any]  # the model settings (and attention options) of this corner
    cfg: ModelConfig
    flops: int  # forward FLOPs per sample
    params: int | None = None

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items()) or "(the only model)"


@dataclass
class Workload:
    """Samples one trial processes, at the space's smallest and largest data_fraction / pretrain_epochs."""

    trained: tuple[int, int]  # samples through forward and backward: every fold, the refit, pretraining
    evaluated: int  # samples through forward only: validation every epoch, the test split once
    models: int  # models a trial trains: its folds and the refit


@dataclass
class Timing:
    flops_per_s: float  # training FLOPs per second of this corner on this machine
    batch: int  # the batch it was timed at
    extrapolated: bool = False  # too slow to time: the speed of a cheaper corner


def corners(spec: Spec, dataset: Dataset) -> list[Corner]:
    """The corners of the spec's model space with their forward FLOPs per sample (closed form)."""
    out = []
    for values, options in space_corners(spec):
        attention = values.get("attention", "softmax")
        flat = {**values, **{f"{attention}{OPTION_SEP}{k}": v for k, v in options.items()}}
        cfg = resolve(spec, flat, dataset.modalities, len(dataset.classes)).model
        shown = {**values, **{f"{attention}.{k}": v for k, v in options.items()}}
        out.append(Corner(shown, cfg, forward_flops(cfg)))
    return out


def trainable(spec: Spec, found: list[Corner], with_params: bool = True) -> list[Corner]:
    """The corners the constraints leave trainable (over max_flops or max_params: measured, never trained)."""
    limits = spec.constraints
    kept = [c for c in found if limits.max_flops is None or c.flops <= limits.max_flops]
    if limits.max_params is None or not with_params:
        return kept
    for c in kept:
        c.params = c.params if c.params is not None else param_count(c.cfg)
    return [c for c in kept if c.params <= limits.max_params]


def final_refits(training: Training) -> int:
    """The refits a trial trains after selection: none for a fold ensemble (it deploys its fold models), one per
    seed for a seed ensemble, else one."""
    if training.final == FOLD_ENSEMBLE:
        return 0
    return training.ensemble_seeds if training.final == SEED_ENSEMBLE else 1


def workload(spec: Spec, dataset: Dataset) -> Workload:
    """Samples one trial processes, from the spec's validation scheme and the data's sizes."""
    folds = selection_folds(spec.data, dataset)
    refits = final_refits(spec.training)
    fit_rows = sum(len(fit) for fit, _ in folds) + refits * len(dataset.pool)  # every fold, then the refits
    unlabelled = 0 if dataset.unlabelled is None else len(dataset.unlabelled)
    fractions = [float(v) for v in choices(spec.space.get("data_fraction", 1.0))]
    pretrain = [int(v) for v in choices(spec.space.get("pretrain_epochs", spec.training.pretrain_epochs))]
    models = len(folds) + refits
    # epochs of every row: under search.data_fidelity the early epochs learn from a share of them
    schedule = search_schedule(spec.search, spec.training.epochs)
    epochs = sum(share_at(schedule, e) for e in range(1, spec.training.epochs + 1))

    def trained(fraction: float, pretrain_epochs: int) -> int:
        return int(epochs * fraction * fit_rows + pretrain_epochs * (fit_rows + models * unlabelled))

    evaluated = spec.training.epochs * sum(len(val) for _, val in folds) + len(dataset.test)
    return Workload((trained(min(fractions), min(pretrain)), trained(max(fractions), max(pretrain))), evaluated,
                    models)


def proportion_warning(spec: Spec, dataset: Dataset | None = None) -> str | None:
    """One line when the costliest trainable corner is out of proportion (the rule in the module docstring)."""
    dataset = dataset or spec_dataset(spec)
    found = trainable(spec, corners(spec, dataset), with_params=False)
    if not found:
        return None
    median = statistics.median(c.flops for c in found)
    for worst in sorted(found, key=lambda c: c.flops, reverse=True):  # the costliest under max_params too
        if spec.constraints.max_params is None or param_count(worst.cfg) <= spec.constraints.max_params:
            break
    else:
        return None
    ratio = worst.flops / max(median, 1)
    if ratio <= OUT_OF_PROPORTION and worst.flops <= TOO_COSTLY_FLOPS:
        return None
    return (f"warning: the costliest corner of the space ({worst.label()}) needs {worst.flops:.3g} FLOPs per sample, "
            f"{ratio:.0f}x the median corner (warned above {OUT_OF_PROPORTION:g}x the median or {TOO_COSTLY_FLOPS:g}"
            f"); the search goes on - preview its cost with `emule plan`, or cap it with constraints.max_flops "
            f"(e.g. {SUGGESTED_CAP * median:.2g}, {SUGGESTED_CAP:g}x the median)")


def calibrate(cfg: ModelConfig, batch: int, device: str = "cpu", seconds: float = CALIBRATION_S) -> float:
    """Training FLOPs per second of ``cfg`` here: timed AdamW steps (forward, backward, update) on random inputs
    of its shapes, after one warm-up step."""
    from emule_models.model import build_model, example_inputs

    model = build_model(cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = example_inputs(cfg, batch, device)
    labels = torch.zeros(batch, dtype=torch.long, device=device)

    def step() -> None:
        loss = F.cross_entropy(model(inputs), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    step()
    steps, begin = 0, time.perf_counter()
    while steps < 3 and (steps == 0 or time.perf_counter() - begin < seconds):
        step()
        steps += 1
    return 3 * forward_flops(cfg) * batch * steps / (time.perf_counter() - begin)


def time_corners(shown: list[Corner], batch: int, threads: int, device: str = "cpu") -> list[Timing]:
    """The speed of each corner (cheapest first), each timed as ``calibrate`` does; a corner whose step would be
    long is timed at a smaller batch, and one too slow even at batch 1 takes the speed of the corner before it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        timings: list[Timing] = []
        for corner in shown:
            known = timings[-1].flops_per_s if timings else None
            step = None if known is None else 3 * corner.flops * batch / known  # predicted seconds per step
            size = batch if step is None or step <= LONGEST_STEP_S else max(1, int(batch * LONGEST_STEP_S / step))
            if step is not None and step / batch * size > UNTIMED_STEP_S:
                timings.append(Timing(known, size, extrapolated=True))
            else:
                timings.append(Timing(calibrate(corner.cfg, size, device), size))
        return timings
    finally:
        torch.set_num_threads(previous)


def plan_lines(spec: Spec, calibrate_time: bool = True) -> list[str]:
    """The cost preview of ``spec``, as lines for the terminal."""
    dataset = spec_dataset(spec)
    found = corners(spec, dataset)
    for c in found:
        c.params = param_count(c.cfg)
    kept = trainable(spec, found)
    work = workload(spec, dataset)
    s = spec.search
    setting = scheme(spec.data)
    rows = "every training row" if setting != HOLDOUT else "train and val"
    refits = final_refits(spec.training)
    final = (", the fold models kept as the ensemble (no refit)" if not refits else f" + a refit on {rows}"
             if refits == 1 else f" + {refits} refits on {rows} from consecutive seeds, averaged")
    training = f"{spec.training.epochs} epochs x {describe(spec.data)}{final}"
    lines = [f"plan {spec.name}: {s.trials} trials, {s.concurrency} at a time, {s.cpus_per_trial:g} CPU"
             f"{f' and {s.gpus_per_trial:g} GPU' if s.gpus_per_trial else ''} each; {training} "
             f"({work.models} trainings per trial) on {len(dataset.pool)} training rows of {spec.data_label}",
             f"{len(found)} corners of the space ({', '.join(k for k in spec.space if k in MODEL_KEYS) or 'fixed'}:"
             f" every choice, each range's bounds)"
             + (f"; {len(found) - len(kept)} over the constraints (measured, never trained)" if len(kept) < len(found)
                else "")]
    if not kept:
        return [*lines, "every corner is over the constraints: no candidate would train"]
    ordered = sorted(kept, key=lambda c: c.flops)
    rows = {"cheapest": ordered[0], "median": ordered[len(ordered) // 2], "costliest": ordered[-1]}
    lo, hi = work.trained
    header = ["", "params", "FLOPs/sample", "training FLOPs/trial", "time/trial (est.)"]
    table, timings = [], None
    if calibrate_time:
        device = "cuda" if s.gpus_per_trial and torch.cuda.is_available() else "cpu"
        timings = time_corners(list(rows.values()), spec.training.batch_size, max(1, int(s.cpus_per_trial)),
                               device)
    for i, (name, c) in enumerate(rows.items()):
        cost = f"{3 * c.flops * lo:.3g}" + (f" .. {3 * c.flops * hi:.3g}" if hi != lo else "")
        if timings is None:
            took = "-"
        else:
            speed = timings[i].flops_per_s
            seconds = [(3 * c.flops * n + c.flops * work.evaluated) / speed for n in (lo, hi)]
            took = duration(seconds[0]) + (f" .. {duration(seconds[1])}" if hi != lo else "")
        table.append([name, f"{c.params:,}", f"{c.flops:.3g}", cost, took])
    widths = [max(len(r[j]) for r in [header, *table]) for j in range(len(header))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header, *table]]
    lines += [f"  {name}: {c.label()}" for name, c in rows.items() if name != "median"]
    sizes = sorted(c.params for c in kept)
    lines.append(f"size {sizes[0]:,} .. {sizes[-1]:,} parameters; training FLOPs are 3 x forward per sample seen "
                 f"(every fold, the refit, pretraining)"
                 + (", the range spans the space's data_fraction and pretrain_epochs" if hi != lo else ""))
    if timings is not None:
        speeds = ", ".join(f"{name} {t.flops_per_s / 1e9:.2g} GFLOP/s"
                           + (" (too slow to time: a cheaper corner's speed)" if t.extrapolated
                              else f" (batch {t.batch})" if t.batch != spec.training.batch_size else "")
                           for name, t in zip(rows, timings))
        lines.append(f"time per trial: training steps timed on this machine ({'CUDA' if device == 'cuda' else 'CPU'}"
                     f", threads {max(1, int(s.cpus_per_trial))}): {speeds}; measuring and start-up not included")
        waves = -(-s.trials // s.concurrency)  # trials run `concurrency` at a time
        per = [(3 * c.flops * n + c.flops * work.evaluated) / t.flops_per_s
               for c, t, n in ((rows["cheapest"], timings[0], lo), (rows["costliest"], timings[2], hi))]
        budget = f"; search.epoch_budget {s.epoch_budget} may end it sooner" if s.epoch_budget else ""
        lines.append(f"search: {s.trials} trials, {s.concurrency} at a time: {duration(waves * per[0])} if every "
                     f"trial were the cheapest, {duration(waves * per[1])} if every one were the costliest{budget}")
    if spec.distill is not None:
        lines.append(_distill_line(spec))
    warning = proportion_warning(spec, dataset)
    if warning:
        lines.append(warning)
    lines.append("nothing was started; run it with `emule search`")
    return lines


def _distill_line(spec: Spec) -> str:
    """What distillation adds before the first trial: the teacher models that make the soft labels (not costed
    above; each is one training of the teacher's own config, cached once made)."""
    folds = 1 if scheme(spec.data) == HOLDOUT else int(scheme(spec.data))
    teachers = spec.distill.paths()
    who = (f"{len(teachers)} teacher(s)" if teachers else
           f"the best {spec.distill.teacher.get('top', 1)} of search {spec.distill.teacher['search']}")
    return (f"distillation: before the first trial, {who} x ({folds} fold(s) + refit) teacher trainings on the "
            "driver make the soft labels (fewer when cached in .emule/soft_labels or when a teacher's weights serve "
            "the refit); not in the figures above")
