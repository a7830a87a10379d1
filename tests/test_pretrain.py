"""Masked-patch pretraining: what is blanked and reconstructed, that it learns, that only the rows a model learns
from (and unlabelled rows) are read - never validation or test rows - and that identical pretrainings are cached."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from emule_models import ModelConfig, build_model
from emule_models import pretrain as pt
from emule_models.config import TOKENIZERS, ModalitySpec
from emule_models.data import synthetic
from emule_models.data.dataset import Split
from emule_models.data.scoring import fingerprint
from emule_models.embed import standardize
from emule_models.train import TrainConfig
from search.trial import validation
from search.trial.candidate import Candidate
from search.trial.validation import cross_validate, refit, selection_folds


def _config(modalities, mode: str = "mixing", tokenizer: str = "patch", **kw) -> ModelConfig:
    return ModelConfig(modalities=modalities, num_classes=3, width=16, depth=1, heads=2, patch_len=4,
                       image_patch=4, channel_mode=mode, tokenizer=tokenizer, **kw)


@pytest.mark.parametrize("mode", ["mixing", "independent"])
def test_series_masking_blanks_whole_patches_and_weights_only_their_real_steps(mode):
    m = ModalitySpec("s", "series", 2, length=10)  # patches of 4 at stride 4: 3 patches, the last one padded
    model = build_model(_config((m,), mode))
    x = torch.randn(6, 2, 10) + 3
    valid = torch.arange(10)[None] < torch.tensor([10, 10, 9, 8, 6, 5])[:, None]
    x = x * valid[:, None]
    blanked, target, weight = pt._mask_series(model.embed["s"], x, valid, 0.5, torch.Generator().manual_seed(0))
    tokens, _ = model.embed["s"](x, valid)
    assert target.shape == weight.shape and target.shape[:2] == tokens.shape[:2]  # one target per token
    zeroed = (blanked == 0) & (x != 0)  # (B, C, L)
    per_patch = weight.reshape(6, -1, 3, 4) if mode == "independent" else \
        weight.reshape(6, 3, 2, 4).permute(0, 2, 1, 3)  # (B, C, N, P)
    for b in range(6):
        for c in range(2):
            for n in range(3):
                steps = slice(4 * n, min(4 * n + 4, 10))
                hidden = bool(zeroed[b, c, steps].any())
                assert hidden == bool(per_patch[b, c, n].any()) or not valid[b, steps].any()
                # weights cover the real steps of a blanked patch, never padding
                real = torch.cat([valid[b, steps], torch.zeros(4 - (steps.stop - steps.start), dtype=torch.bool)])
                assert (per_patch[b, c, n].bool() <= real).all()
    if mode == "mixing":  # a channel-mixing patch is blanked over all channels at once
        assert torch.equal(zeroed[:, 0], zeroed[:, 1])
    # the targets are the input standardised per sample and channel over its real steps, laid out as the tokens
    z = standardize(x, valid)  # (B, C, L)
    first = target.reshape(6, 2, 3, 4)[:, :, 0] if mode == "independent" else target[:, 0].reshape(6, 2, 4)
    assert torch.allclose(first, z[:, :, :4])


def test_image_masking_and_loss_on_a_two_modality_model():
    ds = synthetic(n=60, length=16, classes=3, image=True, image_size=10, seed=0)
    cfg = _config(ds.modalities, fusion="late")
    model = build_model(cfg)
    x = torch.from_numpy(ds.train.inputs["image"][:4])
    blanked, target, weight = pt._mask_image(4, x, 0.5, torch.Generator().manual_seed(1))
    assert target.shape == (4, 4, 16) and weight.shape == target.shape  # 2 x 2 patches of 4 x 4; edges dropped
    assert (blanked[:, :, 8:, :] == x[:, :, 8:, :]).all()  # pixels beyond the last whole patch are never blanked
    inputs, valid, _ = ds.train.batch(np.arange(8))
    loss = pt.reconstruction_loss(model, pt.Reconstruction(cfg), inputs, valid, 0.4, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_pretraining_learns_to_reconstruct(tokenizer):
    ds = synthetic(n=90, length=32, classes=3, variable_length=True, noise=0.1, seed=0)  # little noise to miss
    cfg = _config(ds.modalities, tokenizer=tokenizer)
    torch.manual_seed(0)
    model = build_model(cfg)
    heads = {}

    class Kept(pt.Reconstruction):
        def __init__(self, c):
            super().__init__(c)
            heads["h"] = self

    def held_out_loss():
        x, v, _ = ds.test.batch(np.arange(len(ds.test)))
        with torch.no_grad():
            return pt.reconstruction_loss(model, heads["h"], x, v, 0.4, torch.Generator().manual_seed(5)).item()

    pt.Reconstruction, real = Kept, pt.Reconstruction
    try:
        heads["h"] = real(cfg)
        before = held_out_loss()
        head_before = model.head.weight.clone()
        seen = pt.pretrain(model, ds.train, TrainConfig(pretrain_epochs=30, lr=3e-3, batch_size=16, seed=0))
    finally:
        pt.Reconstruction = real
    assert seen == 30 * len(ds.train)
    assert held_out_loss() < 0.8 * before  # predicting zeros (the standardised mean) scores about 1
    assert torch.equal(model.head.weight, head_before)  # the classifier head is not pretrained


def _candidate(ds, epochs: int = 1, pretrain_epochs: int = 1, dropout: float = 0.0, fraction: float = 1.0):
    model = _config(ds.modalities, dropout=dropout)
    data = {"name": "synthetic", "cv_folds": 3, "seed": 0, "data_fraction": fraction, "selection": "random",
            "subset_seed": 0}
    return Candidate(model, TrainConfig(epochs=epochs, batch_size=16, seed=0, pretrain_epochs=pretrain_epochs), data)


def _marked(ds):
    """Every row's first series value is its own id: ids 0.. for the pool, 10000.. for test, 20000.. unlabelled."""
    def mark(split: Split, base: int) -> Split:
        x = split.inputs["series"].copy()
        x[:, 0, 0] = base + np.arange(len(split))
        return Split({**split.inputs, "series": x}, split.labels, split.valid)

    pool = mark(ds.pool, 0)
    unlabelled = mark(synthetic(n=30, length=16, classes=3, seed=9).train, 20000)
    unlabelled = Split(unlabelled.inputs, np.full(len(unlabelled), -1), unlabelled.valid)
    n = len(ds.train)
    return dataclasses.replace(ds, train=pool.take(np.arange(n)), val=pool.take(np.arange(n, len(pool))),
                               test=mark(ds.test, 10000), unlabelled=unlabelled)


def test_pretraining_reads_the_rows_a_model_learns_from_and_unlabelled_rows_never_validation_or_test(monkeypatch):
    ds = _marked(synthetic(n=90, length=16, classes=3, seed=0))
    read = []
    real = validation.pretrained_state

    def spy(cfg, rows, training, device="cpu", cache_dir=None):
        read.append(set(rows.inputs["series"][:, 0, 0].astype(int).tolist()))
        return real(cfg, rows, training, device, cache_dir)

    monkeypatch.setattr(validation, "pretrained_state", spy)
    cand = _candidate(ds, fraction=0.5)  # pretraining reads every row's inputs, whatever the labelled fraction
    folds = selection_folds(cand.data_section, ds)
    last = list(cross_validate(cand, ds, folds, pretrain_cache=None))[-1]
    _, _, refit_seen = refit(cand, ds, pretrain_cache=None)
    unlabelled = set(range(20000, 20000 + len(ds.unlabelled)))
    assert len(read) == len(folds) + 1
    for (fit_rows, val_rows), rows in zip(folds, read):
        assert rows == set(fit_rows.tolist()) | unlabelled
        assert not rows & set(val_rows.tolist())
    assert read[-1] == set(range(len(ds.pool))) | unlabelled  # the refit's: the whole pool
    assert not any(r >= 10000 and r < 20000 for rows in read for r in rows)  # never a test row
    # pretraining is counted: one epoch over each fold's rows (plus the unlabelled) and the refit's
    assert last["pretrain_samples"] == sum(len(f) + len(ds.unlabelled) for f, _ in folds)
    assert refit_seen == len(ds.pool) + len(ds.unlabelled) + round(0.5 * len(ds.pool))


def test_pretraining_cached_by_architecture_rows_and_settings(tmp_path, monkeypatch):
    ds = synthetic(n=60, length=16, classes=3, seed=0)
    calls = []
    real = pt.pretrain
    monkeypatch.setattr(pt, "pretrain", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg, training = _config(ds.modalities), TrainConfig(pretrain_epochs=2, batch_size=16, seed=0)
    first, seen = pt.pretrained_state(cfg, ds.train, training, cache_dir=tmp_path)
    again, seen_again = pt.pretrained_state(dataclasses.replace(cfg, dropout=0.3), ds.train, training,
                                            cache_dir=tmp_path)  # dropout is off while pretraining: shared
    assert len(calls) == 1 and seen == seen_again == 2 * len(ds.train)
    assert all(torch.equal(first[k], again[k]) for k in first) and not any(k.startswith("head.") for k in first)
    pt.pretrained_state(cfg, ds.val, training, cache_dir=tmp_path)  # other rows
    pt.pretrained_state(cfg, ds.train, dataclasses.replace(training, pretrain_mask_ratio=0.6), cache_dir=tmp_path)
    pt.pretrained_state(dataclasses.replace(cfg, width=32, heads=4), ds.train, training, cache_dir=tmp_path)
    assert len(calls) == 4
    model = build_model(cfg)
    head = model.head.weight.clone()
    pt.load_pretrained(model, first)
    assert torch.equal(model.head.weight, head)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in first.items())
    with pytest.raises(ValueError, match="do not fit the model"):
        pt.load_pretrained(build_model(dataclasses.replace(cfg, width=32, heads=4)), first)
    assert fingerprint(ds.train) != fingerprint(ds.val)
