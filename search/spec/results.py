"""The trial contract: every key a trial's results carry, which of them are metrics, and the names of the tags
that place a run in the MLflow record and say how its trial ended.

A trial (``search.trial.trainable``) reports one dict per epoch through Tune; the driver reads them - the searcher
(what Optuna is told), the schedulers and the epoch budget (``EPOCH`` is their resource), the callbacks (what
MLflow logs) and resume/sync. Every one of them names a key through this module, so a key is renamed in one
place. Metric names and units for people (labels, aliases) are in ``search.spec.metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# --- bookkeeping a trial reports: not metrics ---
EPOCH = "epoch"  # selection epochs trained so far (0 for an infeasible candidate): the schedulers' resource
BUDGET_DONE = "budget_done"  # only on the last result of a trial that trained its full budget: admits it to the front
INFEASIBLE = "infeasible"  # over a spec constraint: measured, never trained
VIOLATIONS = "violations"  # with INFEASIBLE: which limits, readable ("param_count 5e+04 > 1e+04; ...")
REPLAYED = "replayed"  # a result recorded before a driver crash, reported again on resume
TIMED_OUT = "timed_out"  # the last result of a trial stopped by search.max_trial_seconds
ERROR = "error"  # with TIMED_OUT: why, for people
NODE_ID = "node_id"  # the Ray node the trial ran on
DEVICE = "device"  # "cpu" or "cuda"
GPU_IDS = "gpu_ids"  # the GPUs Ray assigned, comma-separated ("" without a GPU share)

# --- costs: measured once before training (static), then per epoch / at the end ---
SIZE = "param_count"  # not "params": MLflow lists run parameters under that name
FLOPS = "flops"
LATENCY_MS = "latency_ms"
LATENCY_TRAIN_BATCH_MS = "latency_train_batch_ms"
PEAK_MEMORY_BYTES = "peak_memory_bytes"
SERVE_MEMORY_BYTES = "serve_memory_bytes"
# Measured once per candidate, before training (they do not change per epoch): MLflow logs them once, at step 0.
STATIC = (SIZE, FLOPS, LATENCY_MS, LATENCY_TRAIN_BATCH_MS, PEAK_MEMORY_BYTES, SERVE_MEMORY_BYTES)
SAMPLES_SEEN = "samples_seen"  # training samples so far, every fold
PRETRAIN_SAMPLES = "pretrain_samples"  # samples of the pretraining that preceded them
TRAINING_COMPUTE = "training_compute"  # FLOPs, 3 x forward x samples seen
REFIT_COMPUTE = "refit_compute"  # FLOPs of the final refit on every training row
TRAIN_SAMPLES = "train_samples"  # rows of the final refit
WORK_TIME_S = "work_time_s"  # seconds the trial worked (the rest of its wall time is overhead)
TEST_ACCURACY, TEST_LOSS = "test_accuracy", "test_loss"  # after the refit, once, on the test split
# Measured once, at a trial's end (the refit and the test split): MLflow logs them at step 0, as the static ones. Its
# charts show a metric whose one value is at step 0 as a bar labelled with the value; at the last epoch it would be a
# lone dot on an axis of its own.
FINAL = (TEST_ACCURACY, TEST_LOSS, TRAIN_SAMPLES, REFIT_COMPUTE, WORK_TIME_S)

# --- keys Tune adds to every result ---
DONE = "done"
TRIAL_ID = "trial_id"
TUNE_KEYS = frozenset({DONE, TRIAL_ID, "date", "hostname", "node_ip", "pid", "timestamp", "time_this_iter_s",
                       "time_total_s", "time_since_restore", "iterations_since_restore", "training_iteration",
                       "experiment_tag", "checkpoint_dir_name", "should_checkpoint", "config"})

# Result keys that are bookkeeping, not metrics: never logged as metrics, never on the front.
BOOKKEEPING = frozenset({EPOCH, BUDGET_DONE, INFEASIBLE, VIOLATIONS, REPLAYED, TIMED_OUT, ERROR, NODE_ID, DEVICE,
                         GPU_IDS, *TUNE_KEYS})
# What an infeasible candidate measured: the rest of its result stands at the spec's reference point.
MEASURED_WITHOUT_TRAINING = frozenset({*STATIC, TRAIN_SAMPLES, WORK_TIME_S})

# --- tags that place a run in the MLflow record (MLflow's own, ``mlflow.*``, are named in search.record.tracking) ---
SEARCH_TAG = "emule.search"  # the search a run belongs to: its parent run and each child run
TRIAL_TAG = "emule.trial_id"  # a child run's trial: how a resumed driver finds the runs it made
RUN_KIND_TAG = "emule.kind"  # search (a parent run), candidate (a child run) or model (a registered model's run)
# a finished candidate on the front, and the knee: tags (true/false) and 0/1 metrics of its run
FRONT_MARK, KNEE_MARK = "pareto", "knee"
STATUS_TAG = "emule.status"  # a search's state: running, complete, interrupted
STOP_REASON_TAG = "emule.stop_reason"  # on runs closed as KILLED: what stopped them
ORPHAN_TAG = "emule.orphan"  # on a discarded run whose trial Tune's saved state lost

# --- tags on a candidate's MLflow run that record how its trial ended ---
FEASIBLE_TAG = "feasible"  # "false" for an infeasible candidate
FAILURE_TAG = "failure"  # why a FAILED run failed: FAILURE_TIMEOUT or FAILURE_ERROR
FAILURE_TIMEOUT, FAILURE_ERROR = "timeout", "error"
# these carry the result key's value under the same name
BUDGET_DONE_TAG, VIOLATIONS_TAG, ERROR_TAG = BUDGET_DONE, VIOLATIONS, ERROR
NODE_ID_TAG, DEVICE_TAG, GPU_IDS_TAG = NODE_ID, DEVICE, GPU_IDS


def flag(value: bool) -> str:
    """A yes/no tag value as MLflow filters compare it: ``"true"`` or ``"false"``."""
    return "true" if value else "false"


def ended_tags(result: Mapping[str, Any], with_node: bool = False) -> dict[str, str]:
    """The tags of a trial Tune ended from its last ``result``: full budget, stopped early, or infeasible, and where
    it ran (``where_tags``)."""
    infeasible = bool(result.get(INFEASIBLE))
    tags = {BUDGET_DONE_TAG: flag(bool(result.get(BUDGET_DONE))), FEASIBLE_TAG: flag(not infeasible),
            **where_tags(result, with_node)}
    if infeasible:
        tags[VIOLATIONS_TAG] = result.get(VIOLATIONS, "")
    return tags


def timed_out_tags(result: Mapping[str, Any], with_node: bool = False) -> dict[str, str]:
    """The tags of a trial stopped by ``search.max_trial_seconds`` (its last result has ``timed_out``)."""
    return {BUDGET_DONE_TAG: flag(False), FEASIBLE_TAG: flag(True), FAILURE_TAG: FAILURE_TIMEOUT,
            ERROR_TAG: result.get(ERROR, ""), **where_tags(result, with_node)}


def where_tags(result: Mapping[str, Any], with_node: bool = False) -> dict[str, str]:
    """Where a trial ran, as tags: its device, the GPUs Ray gave it, and - ``with_node``, on a Ray cluster of
    several nodes - its Ray node. Empty values are left out (no GPU share, a result that does not say), and so is
    the node on one machine, where it is the same for every trial: MLflow lists every tag on a run's page."""
    tags = {DEVICE_TAG: result.get(DEVICE), GPU_IDS_TAG: result.get(GPU_IDS)}
    if with_node:
        tags[NODE_ID_TAG] = result.get(NODE_ID)
    return {k: str(v) for k, v in tags.items() if v not in (None, "")}


def error_tags(error: str) -> dict[str, str]:
    """The tags of a trial that raised: ``error`` is the last line of its traceback (cut to MLflow's tag size)."""
    return {BUDGET_DONE_TAG: flag(False), FAILURE_TAG: FAILURE_ERROR, ERROR_TAG: error[:5000]}


def is_number(value: Any) -> bool:
    """A metric value: an int or a float, not a bool (``True`` is an int to Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metrics_of(result: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics among a result's keys: no bookkeeping, no nested config columns (``config/...``)."""
    return {k: v for k, v in result.items() if k not in BOOKKEEPING and "/" not in k}


def numbers_of(result: Mapping[str, Any]) -> dict[str, float]:
    """A result's numeric metrics as floats (what a finished candidate is ranked on)."""
    return {k: float(v) for k, v in result.items() if k not in BOOKKEEPING and is_number(v)}
