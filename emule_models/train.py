"""Training and evaluation. Reports through one callable passed in; knows nothing of the search around it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emule_models.data.dataset import Split


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"training.{name}: {getattr(self, name)} must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"training.lr: {self.lr} must be > 0")


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 256, device: str = "cpu") -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on a whole split."""
    was_training = model.training
    model.eval()
    correct, loss, order = 0, 0.0, np.arange(len(split))
    for start in range(0, len(split), batch_size):
        inputs, valid, labels = split.batch(order[start:start + batch_size], device)
        logits = model(inputs, valid)
        loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(-1) == labels).sum().item()
    model.train(was_training)
    return {"accuracy": correct / max(1, len(split)), "loss": loss / max(1, len(split))}


def fit(model: nn.Module, train: Split, val: Split | None, cfg: TrainConfig,
        report: Callable[[dict], None] | None = None, device: str = "cpu") -> dict[str, float]:
    """Train with AdamW and a cosine schedule; after each epoch call ``report`` with the epoch's metrics.

    Raises FloatingPointError on a non-finite loss, so a diverging candidate fails loudly instead of scoring.
    Returns the last epoch's metrics.
    """
    metrics: dict[str, float] = {}
    for metrics in train_epochs(model, train, val, cfg, device):
        if report is not None:
            report(metrics)
    return metrics


def train_epochs(model: nn.Module, train: Split, val: Split | None, cfg: TrainConfig,
                 device: str = "cpu") -> Iterator[dict[str, float]]:
    """``fit`` one epoch at a time: yields each epoch's metrics (validation ones only when ``val`` is given), so
    several models - one per cross-validation fold - can train in step and be reported together."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model.to(device).train()
    # bf16 autocast on GPUs that have it: faster matmuls, fp32 weights, no loss scaling needed. CPU stays fp32.
    amp = torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    seen, start = 0, time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        order, total = rng.permutation(len(train)), 0.0
        for s in range(0, len(train), cfg.batch_size):
            inputs, valid, labels = train.batch(order[s:s + cfg.batch_size], device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(model(inputs, valid), labels)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss {loss.item()} at epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(labels)
            seen += len(labels)
        metrics = {"epoch": epoch, "train_loss": total / len(train), "samples_seen": seen,
                   "train_time_s": time.perf_counter() - start}
        if val is not None:
            val_metrics = evaluate(model, val, device=device)
            metrics.update(val_accuracy=val_metrics["accuracy"], val_loss=val_metrics["loss"])
        yield metrics
