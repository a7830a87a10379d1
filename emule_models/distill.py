"""Knowledge distillation (Hinton et al., 2015): a student learns from a teacher's softened class probabilities
beside the labels. The teacher's logits are computed before training (by the search, once) and handed in row for
row; this module only turns them into targets and a loss, and predicts logits for a teacher."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # the data package trains proxy models through train, which imports this module
    from emule_models.data.dataset import Split


def teacher_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The teacher's class probabilities at ``temperature`` (B, K): above 1 they spread mass onto the classes
    the teacher finds similar, which is what the student learns from the labels alone only slowly."""
    return F.softmax(logits.float() / temperature, dim=-1)


def distill_loss(student: torch.Tensor, targets: torch.Tensor, teacher: torch.Tensor, alpha: float,
                 temperature: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """``(1 - alpha) x`` cross-entropy on the (possibly mixed) label ``targets`` ``+ alpha x T^2 x``
    KL(teacher || student at temperature T). ``teacher``: probabilities from ``teacher_targets`` (B, K), mixed
    alike when the batch was mixed. T^2 keeps the soft term's gradient on the scale of the hard one."""
    hard = F.cross_entropy(student, targets, label_smoothing=label_smoothing)
    log_student = F.log_softmax(student.float() / temperature, dim=-1)  # (B, K)
    soft = F.kl_div(log_student, teacher, reduction="batchmean") * temperature ** 2
    return (1 - alpha) * hard + alpha * soft


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """``model``'s logits on every row of ``split``, in order (N, K) float32, in eval mode."""
    was_training = model.training
    model.to(device).eval()
    out, order = [], split.by_length()  # batches of like lengths; the rows are put back in order below
    for start in range(0, len(split), batch_size):
        inputs, valid, _ = split.batch(order[start:start + batch_size], device)
        out.append(model(inputs, valid).float().cpu().numpy())
    model.train(was_training)
    classes = model.cfg.num_classes if hasattr(model, "cfg") else 0
    return np.concatenate(out)[np.argsort(order)] if out else np.zeros((0, classes), np.float32)
