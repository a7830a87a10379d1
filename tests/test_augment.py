"""Augmentation keeps shapes, masks and labels, is seeded, mixes every modality of a sample alike, and never runs
outside training; label smoothing and the weight average (EMA) are what training keeps and validates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emule_models import ModelConfig, build_model
from emule_models import train as train_module
from emule_models.augment import POLICIES, Augmenter
from emule_models.data import synthetic
from emule_models.train import TrainConfig, evaluate, fit

torch.set_num_threads(1)


def batch(b: int = 6, length: int = 40):
    torch.manual_seed(0)
    series = torch.randn(b, 2, length)
    valid = torch.arange(length)[None, :] < torch.tensor([40, 30, 20, 40, 12, 33])[:b, None]
    series = series * valid[:, None, :]
    return {"s": series, "img": torch.randn(b, 1, 8, 8)}, {"s": valid}, torch.tensor([0, 1, 2, 0, 1, 2])[:b]


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_shapes_masks_and_labels_are_kept(policy):
    inputs, valid, labels = batch()
    kept_valid = valid["s"].clone()
    out, targets = Augmenter(policy, 3, seed=1)(inputs, valid, labels)
    assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in inputs.items()}
    assert torch.equal(valid["s"], kept_valid)  # masks are read, never changed
    assert (out["s"] * ~valid["s"][:, None, :]).abs().max() == 0  # padding stays padding
    assert torch.isfinite(out["s"]).all() and torch.isfinite(out["img"]).all()
    assert targets.shape == (6, 3) and torch.allclose(targets.sum(-1), torch.ones(6))
    if "mix" not in POLICIES[policy]:
        assert torch.equal(targets.argmax(-1), labels) and torch.equal(targets.max(-1).values, torch.ones(6))
    if policy == "none":
        assert all(torch.equal(out[k], inputs[k]) for k in inputs)
    else:
        assert not torch.equal(out["s"], inputs["s"]) and not torch.equal(out["img"], inputs["img"])


def test_seeded():
    inputs, valid, labels = batch()
    a = Augmenter("strong", 3, seed=5)(inputs, valid, labels)
    b = Augmenter("strong", 3, seed=5)(inputs, valid, labels)
    c = Augmenter("strong", 3, seed=6)(inputs, valid, labels)
    assert torch.equal(a[0]["s"], b[0]["s"]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0]["s"], c[0]["s"])


def test_mixing_is_the_same_for_every_modality_of_a_sample():
    b = 6
    value = torch.arange(b, dtype=torch.float32) * 10  # each sample constant: its own number
    inputs = {"s": value[:, None, None].expand(b, 1, 100).clone(),
              "img": value[:, None, None, None].expand(b, 1, 20, 20).clone()}
    onehot = torch.eye(b)  # one class per sample: the targets show exactly how much of whom each sample holds
    aug = Augmenter("strong", b, seed=0)
    aug.gen = torch.Generator().manual_seed(0)
    branches = set()
    for _ in range(8):
        out, targets = aug._mix(inputs, {}, onehot)
        from_targets = targets @ value  # the blend the targets claim
        mixup = bool((out["s"].std(-1) < 1e-4).all())  # mixup keeps each sample constant; cutmix pastes a window
        branches.add("mixup" if mixup else "cutmix")
        tolerance = 1e-4 if mixup else 0.05 * float(value.max())  # cutmix: a box on a 20 x 20 grid is rounded
        assert torch.allclose(out["s"].mean((1, 2)), from_targets, atol=1e-4 if mixup else 0.02 * float(value.max()))
        assert torch.allclose(out["img"].mean((1, 2, 3)), from_targets, atol=tolerance)
    assert branches == {"mixup", "cutmix"}


def test_augmentation_runs_only_on_training_batches(monkeypatch):
    calls = []

    class Counting(Augmenter):
        def __call__(self, inputs, valid, labels):
            calls.append(len(labels))
            return super().__call__(inputs, valid, labels)

    monkeypatch.setattr(train_module, "Augmenter", Counting)
    ds = synthetic(n=120, classes=3, seed=0)
    model = build_model(ModelConfig(modalities=ds.modalities, num_classes=3, width=16, depth=1, heads=2, patch_len=8))
    fit(model, ds.train, ds.val, TrainConfig(epochs=2, batch_size=16, augment="strong"))
    assert sum(calls) == 2 * len(ds.train)  # every training row, each epoch; never a validation row
    evaluate(model, ds.val)
    assert sum(calls) == 2 * len(ds.train)


@pytest.mark.parametrize("tokenizer", ["patch", "lite"])  # lite: batch norm's buffers are averaged too
def test_ema_weights_are_the_ones_validated_and_kept(tokenizer):
    ds = synthetic(n=120, classes=3, seed=0)
    cfg = ModelConfig(modalities=ds.modalities, num_classes=3, width=16, depth=1, heads=2, patch_len=8,
                      tokenizer=tokenizer)
    runs = {}
    for ema in (0.0, 0.9):
        torch.manual_seed(0)
        model = build_model(cfg)
        last = fit(model, ds.train, ds.val, TrainConfig(epochs=3, batch_size=16, lr=3e-3, ema=ema))
        assert last["val_accuracy"] == evaluate(model, ds.val)["accuracy"]  # the weights kept were validated
        runs[ema] = [p.detach().clone() for p in model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(runs[0.0], runs[0.9]))  # the average, not the last step


@pytest.mark.parametrize(("field", "value", "message"), [
    ("augment", "heavy", "training.augment: 'heavy' not accepted; accepted: ['none', 'light', 'strong']"),
    ("label_smoothing", 1.0, "training.label_smoothing: 1.0 not accepted; accepted: [0, 1)"),
    ("ema", -0.5, "training.ema: -0.5 not accepted; accepted: [0, 1)"),
])
def test_bad_training_options_refused(field, value, message):
    with pytest.raises(ValueError) as e:
        TrainConfig(**{field: value})
    assert str(e.value) == message


def test_label_smoothing_changes_the_loss_not_the_labels():
    ds = synthetic(n=60, classes=3, seed=0)
    cfg = ModelConfig(modalities=ds.modalities, num_classes=3, width=8, depth=1, heads=2, patch_len=8)
    losses = []
    for smoothing in (0.0, 0.2):
        torch.manual_seed(0)
        losses.append(fit(build_model(cfg), ds.train, None, TrainConfig(epochs=1, label_smoothing=smoothing))
                      ["train_loss"])
    assert losses[1] != losses[0] and np.isfinite(losses).all()


def test_warp_curves_span_each_samples_real_length():
    from emule_models.augment import through_knots

    knots = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]]).expand(2, 1, 4)
    length = 10
    steps = torch.arange(length, dtype=torch.float32).expand(2, length)
    last = torch.tensor([[9.0], [3.0]])  # a full sample, and one with 4 real steps
    curve = through_knots(knots, (steps / last).clamp(max=1))
    assert torch.allclose(curve[0, 0, [0, 3, 6, 9]], torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert torch.allclose(curve[1, 0, :4], torch.tensor([1.0, 2.0, 3.0, 4.0]))  # all four knots in 4 real steps
