"""What runs on a Ray worker for one trial: resolve the candidate, subset the data, train, measure, report.

The dataset arrives through the Ray object store (``tune.with_parameters``), decoded once on the driver, so no
trial re-reads or re-decodes it. Every result carries the objectives, so a scheduler can rank at any epoch;
only the last one has ``budget_done`` (the full training budget was spent), which is what admits a trial to the
Pareto front. Validation metrics are means over the selection folds (``search.trial.validation``); the test accuracy
comes from the candidate's final model after the last selection epoch: a refit on every training row, its fold
models averaged (``training.final: fold_ensemble``), or refits from several seeds averaged (``seed_ensemble``); an
ensemble's size, FLOPs, latency and serving memory are its k models'.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from ray import tune

from emule_models.cost import count_parameters, forward_flops, measure, training_flops
from emule_models.data import Dataset
from emule_models.train import FOLD_ENSEMBLE, TimeLimitExceeded, evaluate, stops_at_exit, time_limit
from search.spec.results import (
    BUDGET_DONE,
    DEVICE,
    EPOCH,
    ERROR,
    FLOPS,
    GPU_IDS,
    INFEASIBLE,
    LATENCY_MS,
    LATENCY_TRAIN_BATCH_MS,
    NODE_ID,
    PEAK_MEMORY_BYTES,
    PRETRAIN_SAMPLES,
    REFIT_COMPUTE,
    REPLAYED,
    SAMPLES_SEEN,
    SERVE_MEMORY_BYTES,
    SIZE,
    TEST_ACCURACY,
    TEST_LOSS,
    TIMED_OUT,
    TRAIN_SAMPLES,
    TRAINING_COMPUTE,
    VIOLATIONS,
    WORK_TIME_S,
)
from search.spec.schema import Spec
from search.trial.candidate import build_seeded, ensemble_size, resolve
from search.trial.reporting import Reporter
from search.trial.teacher import SoftLabels
from search.trial.validation import FoldModels, cross_validate, fit_final, selection_folds


def train_candidate(config: dict[str, Any], spec: Spec, dataset: Dataset,
                    replay: dict[str, dict[str, float]] | None = None,
                    scores: dict[str, np.ndarray] | None = None, pretrain_cache: str | None = None,
                    soft: SoftLabels | None = None) -> None:
    """One trial. ``scores`` are the search's quality scores (computed once on the driver) for the selection strategies
    that need them; ``pretrain_cache`` is where pretrained weights are shared (an absolute path); ``soft`` are the
    distillation teacher's soft labels (made once on the driver, ``search.trial.teacher``). ``replay``
    holds the final results of trials that finished before a driver crash but after Tune last saved its state:
    those report their recorded result again instead of training twice.

    Past ``search.max_trial_seconds`` the trial stops at its next batch and reports once more with ``timed_out``
    (and why, in ``error``): the driver records it as failed, never on the front."""
    start = time.perf_counter()
    trial_id = tune.get_context().get_trial_id()
    if replay and trial_id in replay:
        tune.report({**replay[trial_id], EPOCH: spec.training.epochs, BUDGET_DONE: True, REPLAYED: True})
        return
    known: dict[str, Any] = {}  # what the trial measured and reported so far
    try:
        # results go to the driver from a thread of their own: the next epoch trains while the driver takes this one;
        # an actor shut down mid-epoch (a search ended early) stops the training before its interpreter finalises
        with stops_at_exit(), time_limit(spec.search.max_trial_seconds), Reporter(tune.report) as reporter:
            for row in _results(config, spec, dataset, scores, pretrain_cache, start, known, soft):
                known.update(row)
                reporter.report(row)
    except TimeLimitExceeded:
        tune.report(timed_out(spec, known, time.perf_counter() - start))


def timed_out(spec: Spec, known: dict[str, Any], elapsed: float) -> dict[str, Any]:
    """The last result of a trial stopped by ``search.max_trial_seconds``: what it measured so far, objectives it
    never reached at the spec's reference point (every result must carry them), ``timed_out`` and the reason."""
    epoch = int(known.get(EPOCH, 0))
    error = (f"timeout: past search.max_trial_seconds={spec.search.max_trial_seconds:g} after {elapsed:.1f} s, "
             f"{epoch} of {spec.training.epochs} epochs done")
    return {**{o.metric: o.reference for o in spec.objectives}, **known, EPOCH: epoch, TIMED_OUT: True,
            ERROR: error, WORK_TIME_S: elapsed}


def _results(config: dict[str, Any], spec: Spec, dataset: Dataset, scores: dict[str, np.ndarray] | None,
             pretrain_cache: str | None, start: float, known: dict[str, Any],
             soft: SoftLabels | None = None) -> Iterator[dict[str, Any]]:
    """The trial's results, one per epoch (or one for an infeasible candidate); its static measures go into
    ``known`` as soon as they are taken."""
    threads = max(1, int(spec.search.cpus_per_trial))
    torch.set_num_threads(threads)
    # Ray hides GPUs a trial was not given (CUDA_VISIBLE_DEVICES), so this only picks CUDA when one is assigned.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cand = resolve(spec, config, dataset.modalities, len(dataset.classes))
    folds = selection_folds(cand.data_section, dataset)
    model = build_seeded(cand).to(device)
    measured = measure(model, cand.model, cand.training.batch_size, device)  # on the trial's own device
    k = ensemble_size(cand)  # what is served: an ensemble's k models run one after the other
    static = {SIZE: k * count_parameters(model), FLOPS: k * forward_flops(cand.model),
              LATENCY_MS: k * measured["latency_ms_batch1"],
              LATENCY_TRAIN_BATCH_MS: measured["latency_ms_train_batch"],
              PEAK_MEMORY_BYTES: measured["peak_memory_bytes_train_step"],
              SERVE_MEMORY_BYTES: k * measured["peak_memory_bytes_batch1"], NODE_ID: _node_id(), DEVICE: device,
              GPU_IDS: _gpu_ids()}
    known.update(static)
    del model
    over = spec.constraints.violated(static)
    if over:  # over budget: measured, never trained; training objectives stand at the reference point
        unmeasured = {o.metric: o.reference for o in spec.objectives if o.metric not in static}
        yield {**static, **unmeasured, INFEASIBLE: True, VIOLATIONS: "; ".join(over),
               EPOCH: 0, SAMPLES_SEEN: 0, TRAINING_COMPUTE: 0.0, WORK_TIME_S: time.perf_counter() - start}
        return

    # Every epoch reports the mean over the selection folds: schedulers and the front rank on it.
    kept = FoldModels() if cand.training.final == FOLD_ENSEMBLE else None
    for metrics in cross_validate(cand, dataset, folds, scores, device, pretrain_cache, soft, keep=kept):
        # pretraining is counted as training samples: same encoder, a reconstruction head instead of the classifier
        seen = metrics[SAMPLES_SEEN] + metrics.get(PRETRAIN_SAMPLES, 0)
        row = {**metrics, **static, TRAINING_COMPUTE: training_flops(cand.model, seen)}
        if metrics[EPOCH] == cand.training.epochs:
            # Selection is over for this candidate: its final model (a refit on every training row, the fold
            # models averaged, or refits from several seeds averaged), then the test split, once.
            if kept is not None:
                final, rows, seen = kept.ensemble(), kept.rows_learned_from(), 0
            else:
                final, rows, seen = fit_final(cand, dataset, scores, device, pretrain_cache=pretrain_cache, soft=soft)
            test = evaluate(final, dataset.test, device=device)
            row.update({TEST_ACCURACY: test["accuracy"], TEST_LOSS: test["loss"], TRAIN_SAMPLES: rows,
                        REFIT_COMPUTE: training_flops(cand.model, seen), BUDGET_DONE: True,
                        WORK_TIME_S: time.perf_counter() - start})  # everything this trial did; the rest is overhead
        yield row


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _gpu_ids() -> str:
    """The GPU ids Ray assigned to this trial on its node, comma-separated ('' without a GPU share). Ray assigns
    them from the node's declared GPUs whether or not CUDA can see one, so they show the scheduling decision."""
    import ray

    return ",".join(str(i) for i in ray.get_runtime_context().get_accelerator_ids().get("GPU", []))
