"""Distillation in the training loop: the loss in closed form, teacher probabilities mixed with the same partners
as the labels, a student that learns from soft labels alone, and soft labels refused when missing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emule_models import ModelConfig, build_model
from emule_models.augment import Augmenter
from emule_models.data import synthetic
from emule_models.distill import distill_loss, predict_logits, teacher_targets
from emule_models.train import TrainConfig, evaluate, fit


def test_loss_is_cross_entropy_at_alpha_0_and_scaled_kl_at_alpha_1():
    torch.manual_seed(0)
    student, teacher_logits = torch.randn(5, 3), torch.randn(5, 3)
    targets = F.one_hot(torch.tensor([0, 1, 2, 0, 1]), 3).float()
    teacher = teacher_targets(teacher_logits, 2.0)
    assert torch.allclose(distill_loss(student, targets, teacher, 0.0, 2.0), F.cross_entropy(student, targets))
    q = F.softmax(student / 2.0, -1)
    kl = (teacher * (teacher.log() - q.log())).sum(-1).mean() * 4.0  # T^2 = 4
    assert torch.allclose(distill_loss(student, targets, teacher, 1.0, 2.0), kl, atol=1e-6)
    # a student that already matches its teacher pays nothing for the soft term
    assert distill_loss(teacher_logits, targets, teacher, 1.0, 2.0).item() == pytest.approx(0.0, abs=1e-6)


def test_higher_temperature_spreads_the_teacher():
    logits = torch.tensor([[4.0, 1.0, 0.0]])
    assert teacher_targets(logits, 4.0).max() < teacher_targets(logits, 1.0).max()
    assert teacher_targets(logits, 1.0).sum().item() == pytest.approx(1.0)


def test_teacher_probabilities_are_mixed_with_the_label_targets_partners():
    # a teacher that equals the labels must come out of mixup/cutmix exactly as the label targets do
    data = synthetic(n=60, classes=3, seed=0)
    aug = Augmenter("strong", 3, seed=1)
    inputs, valid, labels = data.train.batch(np.arange(16))
    _, targets, teacher = aug.with_teacher(inputs, valid, labels, F.one_hot(labels, 3).float())
    assert torch.allclose(targets, teacher)
    assert not torch.equal(targets, F.one_hot(labels, 3).float())  # this batch was mixed
    # and the same draws as plain calls: the policy's random stream is unchanged by the teacher
    again = Augmenter("strong", 3, seed=1)
    assert torch.allclose(again(inputs, valid, labels)[1], targets)


def _model(data, seed=0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(modalities=data.modalities, num_classes=len(data.classes), width=16, depth=1,
                                   heads=2, patch_len=8, dropout=0.0))


def test_a_student_learns_from_soft_labels_alone():
    """With alpha = 1 the labels play no part: a student fed a good teacher's logits and shuffled labels still
    learns the task, one fed the same shuffled labels without a teacher does not."""
    data = synthetic(n=240, classes=3, seed=0, noise=0.2)
    teacher = _model(data)
    fit(teacher, data.train, None, TrainConfig(epochs=15, batch_size=32, lr=3e-3))
    assert evaluate(teacher, data.test)["accuracy"] > 0.8
    logits = predict_logits(teacher, data.train)
    shuffled = data.train.__class__(data.train.inputs, np.random.default_rng(0).permutation(data.train.labels),
                                    data.train.valid)
    distilled = TrainConfig(epochs=15, batch_size=32, lr=3e-3, distill_alpha=1.0, distill_temperature=2.0)
    student = _model(data, seed=1)
    fit(student, shuffled, None, distilled, teacher=logits)
    plain = _model(data, seed=1)
    fit(plain, shuffled, None, TrainConfig(epochs=15, batch_size=32, lr=3e-3))
    assert evaluate(student, data.test)["accuracy"] > 0.8
    assert evaluate(plain, data.test)["accuracy"] < 0.6


def test_soft_labels_missing_or_incomplete_are_refused():
    data = synthetic(n=60, classes=3, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=16, distill_alpha=0.5)
    with pytest.raises(ValueError, match="training.distill_alpha: 0.5 needs a teacher's soft labels"):
        fit(_model(data), data.train, None, cfg)
    logits = np.zeros((len(data.train), 3), np.float32)
    logits[3] = math.nan  # a row the teacher was not allowed to label
    with pytest.raises(ValueError, match="missing on 1 of"):
        fit(_model(data), data.train, None, cfg, teacher=logits)
    with pytest.raises(ValueError, match="rows for"):
        fit(_model(data), data.train, None, cfg, teacher=logits[:5])


@pytest.mark.parametrize(("field", "value"), [("distill_alpha", 1.5), ("distill_alpha", -0.1),
                                              ("distill_temperature", 0.0)])
def test_bad_distill_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=f"training.{field}: {value}"):
        TrainConfig(**{field: value})
