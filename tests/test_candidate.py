"""From sampled parameters to a trained model, through the same path a trial takes: every attention variant and
every fusion of the model family is usable from a spec."""

from pathlib import Path

import numpy as np
import pytest
import torch

from emule_models.attention import ATTENTION
from emule_models.cost import count_parameters, forward_flops
from emule_models.fusion import FUSION
from emule_models.train import TrainConfig, fit
from search.driver.checks import load_spec
from search.trial.candidate import Candidate, build_seeded, resolve, spec_dataset
from search.trial.validation import subset

FULL = load_spec(Path(__file__).resolve().parents[1] / "spaces" / "full.yaml")


def test_full_spec_offers_every_variant_and_fusion():
    assert set(FULL.space["attention"]) == set(ATTENTION)
    assert set(FULL.space["fusion"]) == set(FUSION)


@pytest.mark.parametrize("fusion", sorted(FUSION))
@pytest.mark.parametrize("attention", sorted(ATTENTION))
def test_each_variant_and_fusion_trains_from_the_spec(attention, fusion):
    torch.set_num_threads(1)
    data = spec_dataset(FULL)
    flat = {"attention": attention, "fusion": fusion, "fusion_layer": 0, "depth": 1, "width": 32, "heads": 2,
            "patch_len": 32, "channel_mode": "mixing", "image_patch": 8, "data_fraction": 0.25, "lr": 1e-3}
    flat.update({f"{attention}.{k}": v[0] for k, v in FULL.attention_options.get(attention, {}).items()})
    cand = resolve(FULL, flat, data.modalities, len(data.classes))
    assert cand.model.attention == attention and cand.model.fusion == fusion
    rows = subset(cand, data.pool.labels, np.arange(len(data.train)), None)
    assert len(rows) < len(data.train)
    model = build_seeded(cand)
    assert count_parameters(model) > 0 and forward_flops(cand.model) > 0
    metrics = fit(model, data.train.take(rows), data.val, TrainConfig(epochs=1, batch_size=32))
    assert metrics["samples_seen"] == len(rows) and torch.isfinite(torch.tensor(metrics["train_loss"]))
    again = Candidate.from_dict(cand.to_dict())  # what export writes and `emule train` reads
    assert again == cand and count_parameters(build_seeded(again)) == count_parameters(model)
