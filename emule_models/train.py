"""Training and evaluation. Reports through one callable passed in; knows nothing of the search around it."""

from __future__ import annotations

import atexit
import contextlib
import math
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.optim.swa_utils import AveragedModel

from emule_models.augment import POLICIES, Augmenter
from emule_models.distill import distill_loss, teacher_targets

if TYPE_CHECKING:  # the data package trains proxy models with this module: it may not import data back
    from emule_models.data.dataset import Split


# How the learning rate moves: ``cosine`` anneals it to zero over the steps taken; ``plateau`` halves it when the
# epoch's training loss has not improved for a 30th of the epochs (at least 3), down to a tenth of ``lr`` - the
# schedule LITE and InceptionTime train with (patience 50 of 1500 epochs, floor 1e-4 under 1e-3), which keeps the
# rate up for as long as the model still learns and suits the hundreds of epochs tiny models need.
LR_SCHEDULES = ("cosine", "plateau")
# What a candidate deploys once selection is over: ``refit``, one model trained again on every training row;
# ``fold_ensemble``, the k models cross-validation already trained (each on k-1 folds), probabilities averaged
# (``emule_models.ensemble``): no refit to pay, k times the parameters, FLOPs and latency to serve; or
# ``seed_ensemble``, ``ensemble_seeds`` refits on every training row from consecutive seeds, averaged the same way -
# LITETime's five LITEs: that many refits to pay and models to serve.
FOLD_ENSEMBLE = "fold_ensemble"
SEED_ENSEMBLE = "seed_ensemble"
FINALS = ("refit", FOLD_ENSEMBLE, SEED_ENSEMBLE)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0
    lr_schedule: str = "cosine"  # one of LR_SCHEDULES
    final: str = "refit"  # one of FINALS: what is deployed (the training loop itself does not read it)
    ensemble_seeds: int = 5  # the models of a seed ensemble (``final: seed_ensemble``), from seeds seed, seed+1, ...
    augment: str = "none"  # a policy in emule_models.augment.POLICIES
    label_smoothing: float = 0.0
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = off
    pretrain_epochs: int = 0  # masked-patch reconstruction before supervised training (emule_models.pretrain); 0 = off
    pretrain_mask_ratio: float = 0.4  # share of each sample's patches blanked and reconstructed
    distill_alpha: float = 0.0  # weight of the teacher's soft labels in the loss (emule_models.distill); 0 = off
    distill_temperature: float = 4.0  # softmax temperature of teacher and student in the soft term
    # (last epoch, share of the training rows) steps: early epochs learn from nested, class-balanced subsets
    # (``epoch_rows``); past the last step every row. Empty = every row at every epoch.
    data_schedule: tuple[tuple[int, float], ...] = ()

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"training.{name}: {getattr(self, name)} must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"training.lr: {self.lr} must be > 0")
        POLICIES.lookup(self.augment)  # refuses an unknown policy, naming the accepted ones
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"training.lr_schedule: {self.lr_schedule!r} not accepted; accepted: {list(LR_SCHEDULES)}")
        if self.final not in FINALS:
            raise ValueError(f"training.final: {self.final!r} not accepted; accepted: {list(FINALS)}")
        if self.ensemble_seeds < 2:
            raise ValueError(f"training.ensemble_seeds: {self.ensemble_seeds} not accepted; accepted: an integer >= 2")
        if self.pretrain_epochs < 0:
            raise ValueError(f"training.pretrain_epochs: {self.pretrain_epochs} must be >= 0")
        if not 0.0 < self.pretrain_mask_ratio < 1.0:
            raise ValueError(f"training.pretrain_mask_ratio: {self.pretrain_mask_ratio} not accepted; accepted: (0, 1)")
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise ValueError(f"training.distill_alpha: {self.distill_alpha} not accepted; accepted: [0, 1]")
        if not self.distill_temperature > 0:
            raise ValueError(f"training.distill_temperature: {self.distill_temperature} not accepted; accepted: > 0")
        for name in ("label_smoothing", "ema"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"training.{name}: {getattr(self, name)} not accepted; accepted: [0, 1)")
        object.__setattr__(self, "data_schedule", _schedule(self.data_schedule))  # lists from YAML become tuples


def _schedule(steps) -> tuple[tuple[int, float], ...]:
    accepted = "accepted: [[last epoch, share in (0, 1]], ...] with increasing epochs >= 1"
    try:
        out = tuple((int(epoch), float(share)) for epoch, share in steps)
    except (TypeError, ValueError):
        raise ValueError(f"training.data_schedule: {steps!r} not accepted; {accepted}") from None
    epochs = [e for e, _ in out]
    if any(e < 1 for e in epochs) or epochs != sorted(set(epochs)) or any(not 0 < s <= 1 for _, s in out):
        raise ValueError(f"training.data_schedule: {steps!r} not accepted; {accepted}")
    return out


def share_at(schedule: tuple[tuple[int, float], ...], epoch: int) -> float:
    """The share of the training rows ``epoch`` learns from under a ``TrainConfig.data_schedule``."""
    return next((share for last, share in schedule if epoch <= last), 1.0)


def epoch_rows(labels: np.ndarray, cfg: TrainConfig) -> Callable[[int], np.ndarray]:
    """epoch -> the rows of a training split with these labels that the epoch learns from, by
    ``cfg.data_schedule``: per class the first ``max(1, round(share * class size))`` rows of one seeded shuffle
    (the quota of ``emule_models.data.select``), so a later step's rows contain an earlier one's and every step
    keeps the class balance."""
    every = np.arange(len(labels))
    if not cfg.data_schedule:
        return lambda epoch: every
    rng = np.random.default_rng([cfg.seed, len(labels)])  # not the batch order's stream: that one stays as it was
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]

    def rows(epoch: int) -> np.ndarray:
        share = share_at(cfg.data_schedule, epoch)
        if share >= 1:
            return every
        return np.sort(np.concatenate([r[:max(1, round(share * len(r)))] for r in by_class]))

    return rows


class TimeLimitExceeded(TimeoutError):
    """Raised between batches once the time limit set by ``time_limit`` has passed."""


_limit = threading.local()  # (deadline on the monotonic clock, seconds) of the current thread's time_limit


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Within the block, training, pretraining and evaluation raise TimeLimitExceeded at their next batch once
    ``seconds`` have passed (None: no limit). Per thread; a batch in progress is never cut."""
    previous = getattr(_limit, "value", None)
    _limit.value = None if seconds is None else (time.monotonic() + seconds, seconds)
    try:
        yield
    finally:
        _limit.value = previous


def check_time_limit() -> None:
    """Between batches: raise TimeLimitExceeded when the current ``time_limit`` has passed, ProcessExiting when
    this process has begun to exit around a ``stops_at_exit`` block."""
    if _exiting.is_set():
        raise ProcessExiting("the process is exiting")
    value = getattr(_limit, "value", None)
    if value is not None and time.monotonic() > value[0]:
        raise TimeLimitExceeded(f"past the time limit of {value[1]:g} s")


class ProcessExiting(Exception):
    """Raised between batches inside ``stops_at_exit`` once the process has begun to exit."""


_exiting = threading.Event()  # set at exit: every stops_at_exit block stops training at its next batch
_running = threading.Condition()  # guards _running_blocks (the stops_at_exit blocks now open) and _hooked
_running_blocks = 0
_hooked = False  # the exit hook is registered at the first block, not at import: atexit runs its hooks last
# registered first, so this one runs before those of the libraries imported earlier (Ray's among them)
EXIT_WAIT_S = 30.0  # the longest the process's exit waits for its training to stop (one batch, normally)


@contextlib.contextmanager
def stops_at_exit() -> Iterator[None]:
    """Training inside the block - on any thread - stops at its next batch once the process begins to exit, and
    the exit waits for that (at most ``EXIT_WAIT_S``). Why: a thread still inside torch when the interpreter
    finalises (a Ray actor shut down while its trial is mid-epoch) is ended by ``pthread_exit``, whose unwinding
    through torch's C++ frames aborts the process with "Fatal Python error: Aborted". Torch objects the training
    holds must live in frames below the block (as the trainable's generators do): they are freed before the
    exit goes on; the block's own frame is not."""
    global _running_blocks, _hooked
    with _running:
        if not _hooked:
            atexit.register(_stop_training)
            _hooked = True
        _running_blocks += 1
    try:
        yield
    except ProcessExiting as e:  # free the stopped training's tensors now, while the exit still waits for them
        traceback.clear_frames(e.__traceback__)
        raise
    finally:
        with _running:
            _running_blocks -= 1
            _running.notify_all()


def _stop_training() -> None:
    _exiting.set()
    with _running:
        _running.wait_for(lambda: _running_blocks == 0, timeout=EXIT_WAIT_S)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 256, device: str = "cpu") -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on a whole split."""
    was_training = model.training
    model.eval()
    correct, loss, order = 0, 0.0, split.by_length()  # sums: the order changes nothing but the padding computed
    for start in range(0, len(split), batch_size):
        check_time_limit()
        inputs, valid, labels = split.batch(order[start:start + batch_size], device)
        logits = model(inputs, valid)
        loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(-1) == labels).sum().item()
    model.train(was_training)
    return {"accuracy": correct / max(1, len(split)), "loss": loss / max(1, len(split))}


def fit(model: nn.Module, train: Split, val: Split | None, cfg: TrainConfig,
        report: Callable[[dict], None] | None = None, device: str = "cpu",
        teacher: np.ndarray | None = None) -> dict[str, float]:
    """Train with AdamW and ``cfg.lr_schedule``; after each epoch call ``report`` with the epoch's metrics.
    ``teacher``: a teacher's logits on ``train``, row for row, for ``cfg.distill_alpha`` (see ``train_epochs``).

    Raises FloatingPointError on a non-finite loss, so a diverging candidate fails loudly instead of scoring.
    Returns the last epoch's metrics.
    """
    metrics: dict[str, float] = {}
    for metrics in train_epochs(model, train, val, cfg, device, teacher):
        if report is not None:
            report(metrics)
    return metrics


def train_epochs(model: nn.Module, train: Split, val: Split | None, cfg: TrainConfig,
                 device: str = "cpu", teacher: np.ndarray | None = None) -> Iterator[dict[str, float]]:
    """``fit`` one epoch at a time: yields each epoch's metrics (validation ones only when ``val`` is given), so
    several models - one per cross-validation fold - can train in step and be reported together.

    ``cfg.augment`` augments training batches only; with ``cfg.ema`` the averaged weights are the ones validated,
    and they replace the model's weights before the last epoch is yielded (so they are what is kept). With
    ``cfg.distill_alpha`` the loss blends in ``teacher`` - a teacher's logits (N, K) on ``train``, row for row -
    softened at ``cfg.distill_temperature`` (``emule_models.distill``); a row without them is refused. With
    ``cfg.data_schedule`` an early epoch learns from a subset of ``train`` (``epoch_rows``) and the learning-rate
    schedule spans the steps actually taken."""
    soft = _teacher_logits(teacher, train, cfg)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model.to(device).train()
    classes = model.cfg.num_classes if hasattr(model, "cfg") else int(train.labels.max()) + 1
    augment = Augmenter(cfg.augment, classes, seed=cfg.seed)
    ema = AveragedModel(model, multi_avg_fn=_ema_with_warmup(cfg.ema), use_buffers=True) if cfg.ema else None
    amp = use_bf16(device)
    rows_of = epoch_rows(train.labels, cfg)
    steps = sum(math.ceil(len(rows_of(e)) / cfg.batch_size) for e in range(1, cfg.epochs + 1))
    opt, sched = adamw(model.parameters(), cfg, steps)
    seen, start = 0, time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        learns = rows_of(epoch)
        order, total = learns[rng.permutation(len(learns))], 0.0
        for s in range(0, len(learns), cfg.batch_size):
            check_time_limit()
            inputs, valid, labels = train.batch(order[s:s + cfg.batch_size], device)
            if soft is None:
                inputs, targets = augment(inputs, valid, labels)  # soft targets: mixup/cutmix blend them
            else:  # the teacher's probabilities are blended with the same partners and shares
                rows = torch.from_numpy(order[s:s + cfg.batch_size])
                probs = teacher_targets(soft[rows].to(device), cfg.distill_temperature)
                inputs, targets, probs = augment.with_teacher(inputs, valid, labels, probs)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                logits = model(inputs, valid)
                loss = (F.cross_entropy(logits, targets, label_smoothing=cfg.label_smoothing) if soft is None else
                        distill_loss(logits, targets, probs, cfg.distill_alpha, cfg.distill_temperature,
                                     cfg.label_smoothing))
            step(loss, opt, sched, f"training loss at epoch {epoch}")
            if ema is not None:
                ema.update_parameters(model)
            total += loss.item() * len(labels)
            seen += len(labels)
        metrics = {"epoch": epoch, "train_loss": total / len(learns), "samples_seen": seen,
                   "train_time_s": time.perf_counter() - start}
        if isinstance(sched, ReduceLROnPlateau):
            sched.step(metrics["train_loss"])
        if ema is not None and epoch == cfg.epochs:
            model.load_state_dict(ema.module.state_dict())
        if val is not None:
            val_metrics = evaluate(ema.module if ema is not None else model, val, device=device)
            metrics.update(val_accuracy=val_metrics["accuracy"], val_loss=val_metrics["loss"])
        yield metrics


def _teacher_logits(teacher: np.ndarray | None, train: Split, cfg: TrainConfig) -> torch.Tensor | None:
    """The teacher's logits as a tensor when ``cfg`` distills (None otherwise); refused when missing, of the
    wrong shape, or not finite on some row (a row the teacher was not allowed to label)."""
    if not cfg.distill_alpha:
        return None
    if teacher is None:
        raise ValueError(f"training.distill_alpha: {cfg.distill_alpha} needs a teacher's soft labels for the "
                         "training rows; accepted: 0 without a teacher (the spec's distill section names one)")
    if teacher.shape[0] != len(train):
        raise ValueError(f"teacher soft labels: {teacher.shape[0]} rows for {len(train)} training rows; accepted: "
                         "one row of logits per training row")
    missing = int((~np.isfinite(teacher).all(axis=1)).sum())
    if missing:
        raise ValueError(f"teacher soft labels: missing on {missing} of {len(train)} training rows (a teacher never "
                         "labels rows it must not see); accepted: logits for every row the model learns from")
    return torch.from_numpy(np.ascontiguousarray(teacher, dtype=np.float32))


def use_bf16(device: str) -> bool:
    """bf16 autocast on GPUs that have it: faster matmuls, fp32 weights, no loss scaling needed. CPU stays fp32."""
    return torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported()


def adamw(params, cfg: TrainConfig, steps: int, schedule: str | None = None):
    """AdamW at ``cfg.lr`` with ``cfg.weight_decay``, and its rate schedule (``schedule``, else
    ``cfg.lr_schedule``): annealed to zero over ``steps`` on a cosine (stepped per batch), or reduced on a plateau
    of the training loss (stepped per epoch with the epoch's loss, see ``LR_SCHEDULES``)."""
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if (schedule or cfg.lr_schedule) == "plateau":
        return opt, ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=max(3, round(cfg.epochs / 30)),
                                      min_lr=cfg.lr / 10)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)


def step(loss: torch.Tensor, opt: torch.optim.Optimizer, sched, what: str) -> None:
    """One optimiser step on ``loss``; a non-finite loss raises FloatingPointError naming ``what``, so a diverging
    candidate fails loudly instead of scoring."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite {what}: {loss.item()}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if not isinstance(sched, ReduceLROnPlateau):  # that one steps once per epoch, on the epoch's loss
        sched.step()


def _ema_with_warmup(decay: float):
    """EMA update whose decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after n updates (as TensorFlow's
    ExponentialMovingAverage with num_updates): with the few hundred steps of a small dataset a fixed 0.99-0.999
    would still mostly hold the initial weights at the end. One decay per step for all parameters."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        d = min(decay, (1 + int(n)) / (10 + int(n)))
        for a, c in zip(averaged, current):
            if a.is_floating_point():
                a.lerp_(c, 1 - d)
            else:  # a count (batch norm's batches seen) is copied, not averaged
                a.copy_(c)

    return update
