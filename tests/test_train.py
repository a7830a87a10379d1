"""The learning-rate schedules: cosine per batch, or reduced on a plateau of the training loss per epoch (LITE and
InceptionTime's schedule), with its patience and floor following the epochs and the rate; both train end to end.
Evaluation batches rows of like lengths and answers in row order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emule_models import ModelConfig, build_model
from emule_models.data import synthetic
from emule_models.distill import predict_logits
from emule_models.train import LR_SCHEDULES, TrainConfig, adamw, evaluate, fit, step


def loss_of(param: torch.nn.Parameter) -> torch.Tensor:
    return (param ** 2).sum()


def test_plateau_holds_the_rate_per_batch_and_halves_it_when_the_loss_stalls():
    param = torch.nn.Parameter(torch.ones(3))
    cfg = TrainConfig(epochs=150, lr=1e-2, lr_schedule="plateau")  # patience: 150 / 30 = 5 epochs
    opt, sched = adamw([param], cfg, steps=1000)
    for _ in range(20):  # batches never move it
        step(loss_of(param), opt, sched, "loss")
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2)
    sched.step(1.0)  # the best loss so far
    for _ in range(5):  # five stalled epochs: still patient
        sched.step(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2)
    sched.step(1.0)  # the sixth: halved
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-3)
    for _ in range(100):  # never below a tenth of the rate
        sched.step(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_cosine_anneals_per_batch_and_is_the_default():
    assert TrainConfig().lr_schedule == "cosine"
    param = torch.nn.Parameter(torch.ones(3))
    opt, sched = adamw([param], TrainConfig(lr=1e-2), steps=10)
    for _ in range(10):
        step(loss_of(param), opt, sched, "loss")
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("schedule", LR_SCHEDULES)
def test_each_schedule_trains_a_model(schedule):
    ds = synthetic(n=64, seed=0)
    model = build_model(ModelConfig(modalities=ds.modalities, num_classes=len(ds.classes), depth=1, width=16,
                                    heads=2, patch_len=8))
    first = fit(model, ds.train, ds.val, TrainConfig(epochs=1, batch_size=16, lr=3e-3, lr_schedule=schedule))
    last = fit(model, ds.train, ds.val, TrainConfig(epochs=6, batch_size=16, lr=3e-3, lr_schedule=schedule))
    assert last["train_loss"] < first["train_loss"]


def test_an_unknown_schedule_is_refused_by_name():
    accepted = r"accepted: \['cosine', 'plateau'\]"
    with pytest.raises(ValueError, match=rf"training.lr_schedule: 'step' not accepted; {accepted}"):
        TrainConfig(lr_schedule="step")


def test_evaluation_batches_rows_by_length_and_answers_in_row_order():
    """``evaluate`` and ``predict_logits`` batch rows of like lengths (less padding to run); the logits come back
    row for row, as one row at a time gives them, and accuracy and loss are the split's."""
    data = synthetic(n=90, length=40, classes=3, seed=0, variable_length=True)
    test = data.test
    order = test.by_length()
    steps = test.valid["series"].sum(1)
    assert sorted(order) == list(range(len(test))) and (np.diff(steps[order]) >= 0).all()
    torch.manual_seed(0)
    model = build_model(ModelConfig(modalities=data.modalities, num_classes=3, depth=1, width=16, heads=2,
                                    patch_len=4, tokenizer="lite", conv_kernel=9)).eval()
    logits = predict_logits(model, test, batch_size=7)
    with torch.no_grad():
        one_by_one = torch.cat([model(*test.batch(np.array([i]))[:2]) for i in range(len(test))]).numpy()
    np.testing.assert_allclose(logits, one_by_one, rtol=1e-4, atol=1e-5)
    labels = torch.from_numpy(test.labels)
    scores = evaluate(model, test, batch_size=7)
    assert scores["accuracy"] == pytest.approx((logits.argmax(1) == test.labels).mean())
    assert scores["loss"] == pytest.approx(F.cross_entropy(torch.from_numpy(logits), labels).item(), rel=1e-5)
