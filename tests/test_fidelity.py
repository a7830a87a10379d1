"""Cheaper early search: data as a fidelity (the rung ladder's data shares, the nested class-balanced subsets an epoch
learns from, the spec setting that turns it on) and the length of the sampler's random start-up."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from emule_models import ModalitySpec, ModelConfig, build_model
from emule_models.data.dataset import Split
from emule_models.train import TrainConfig, epoch_rows, evaluate, train_epochs
from search.driver.checks import parse_spec
from search.spec.fidelity import data_schedule
from search.spec.schema import SpecError
from search.trial.candidate import Candidate, resolve, spec_dataset
from tests.test_spec import with_change


def flat(schedule) -> list[float]:
    return [v for step in schedule for v in step]


def test_shares_grow_by_the_reduction_factor_to_every_row():
    assert flat(data_schedule(1 / 9, 1, 3, 9)) == pytest.approx([1, 1 / 9, 3, 1 / 3])
    assert flat(data_schedule(0.25, 2, 2, 16)) == pytest.approx([2, 0.25, 4, 0.25 ** (2 / 3), 8, 0.25 ** (1 / 3)])
    assert data_schedule(1.0, 1, 3, 9) == ()  # off
    assert data_schedule(0.5, 5, 3, 5) == ()  # no rung below the last epoch: nothing to grow at


def test_a_share_outside_0_1_is_refused():
    with pytest.raises(ValueError, match=r"search.data_fidelity: 0 not accepted; accepted: a number in \(0, 1\]"):
        data_schedule(0, 1, 3, 9)


def test_epoch_rows_are_nested_class_balanced_and_end_with_every_row():
    labels = np.repeat([0, 1, 2], [30, 12, 3])
    rows_of = epoch_rows(labels, TrainConfig(epochs=9, data_schedule=((1, 1 / 9), (3, 1 / 3))))
    first, second, last = rows_of(1), rows_of(2), rows_of(9)
    # per class max(1, round(share * size)): 1/9 -> 3, 1, 1 (at least one); 1/3 -> 10, 4, 1
    assert np.bincount(labels[first], minlength=3).tolist() == [3, 1, 1]
    assert np.bincount(labels[second], minlength=3).tolist() == [10, 4, 1]
    assert set(first) <= set(second) and rows_of(3).tolist() == second.tolist()
    assert last.tolist() == list(range(len(labels))) == rows_of(4).tolist()
    assert epoch_rows(labels, TrainConfig(epochs=9))(1).tolist() == list(range(len(labels)))  # no schedule


def test_a_bad_schedule_is_refused_naming_the_field():
    for bad in ([[3, 0.5], [1, 0.2]], [[1, 0.0]], [[0, 0.5]], [[1, 1.5]], ["x"]):
        with pytest.raises(ValueError, match=r"training.data_schedule: .* not accepted; accepted: "):
            TrainConfig(data_schedule=bad)
    assert TrainConfig(data_schedule=[[1, 0.25], [3, 0.5]]).data_schedule == ((1, 0.25), (3, 0.5))  # from YAML


def two_classes() -> Split:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 32)
    x = (rng.normal(size=(64, 1, 24)) + labels[:, None, None] * 1.5).astype(np.float32)
    return Split({"s": x}, labels.astype(np.int64))


def small_model():
    return build_model(ModelConfig(modalities=(ModalitySpec("s", "series", channels=1, length=24),),
                                   num_classes=2, width=16, depth=1, heads=1, patch_len=6))


SCHEDULE = ((1, 1 / 8), (3, 1 / 2))


def test_early_epochs_learn_from_their_share_and_the_model_still_learns():
    data, model = two_classes(), small_model()
    cfg = TrainConfig(epochs=9, batch_size=16, lr=3e-3, data_schedule=SCHEDULE)
    seen = [m["samples_seen"] for m in train_epochs(model, data, data, cfg)]
    assert np.diff([0, *seen]).tolist() == [8, 32, 32, 64, 64, 64, 64, 64, 64]
    assert evaluate(model, data)["accuracy"] > 0.9


def test_a_distilled_student_reads_its_teacher_on_the_rows_each_epoch_learns_from():
    data = two_classes()
    teacher = np.stack([1.0 - data.labels, data.labels.astype(float)], axis=1) * 4.0  # confident and right
    cfg = TrainConfig(epochs=9, batch_size=16, lr=3e-3, data_schedule=SCHEDULE, distill_alpha=0.5)
    seen = [m["samples_seen"] for m in train_epochs(small_model(), data, None, cfg, teacher=teacher)]
    assert seen[0] == 8 and seen[-1] == 8 + 2 * 32 + 6 * 64


def test_data_fidelity_needs_a_scheduler():
    with pytest.raises(SpecError, match=r"search.data_fidelity: 0.5 needs rungs to grow the data at; accepted: 1 "
                                        r"with search.scheduler: none, or a scheduler"):
        parse_spec(with_change("search.data_fidelity", 0.5))
    with pytest.raises(SpecError, match=r"search.data_fidelity: 1.5"):
        parse_spec(with_change("search.data_fidelity", 1.5))


def test_a_candidate_carries_its_schedule_through_export():
    raw = with_change("search.scheduler", "mo-asha")
    raw["search"].update(data_fidelity=1 / 9, grace_period=1, reduction_factor=3)
    raw["training"]["epochs"] = 9
    spec = parse_spec(raw)
    data = spec_dataset(spec)
    cand = resolve(spec, {}, data.modalities, len(data.classes))
    assert flat(cand.training.data_schedule) == pytest.approx([1, 1 / 9, 3, 1 / 3])
    again = Candidate.from_dict(cand.to_dict())
    assert again.training == cand.training  # a retrain learns on the same schedule
    plain = parse_spec(with_change("search.scheduler", "mo-asha"))
    assert resolve(plain, {}, data.modalities, len(data.classes)).training.data_schedule == ()


def test_startup_trials_set_how_long_tpe_samples_at_random():
    from search.spec.space import build_sampler

    raw = with_change("search.sampler", "tpe")
    raw["search"]["trials"] = 48
    assert build_sampler(parse_spec(raw)).sampler._n_startup_trials == 12  # default: a quarter of the trials
    raw["search"]["startup_trials"] = 5
    assert build_sampler(parse_spec(raw)).sampler._n_startup_trials == 5
    with pytest.raises(SpecError, match=r"search.startup_trials: 0"):
        parse_spec(with_change("search.startup_trials", 0))


def test_plan_counts_the_rows_the_early_epochs_skip():
    from search.driver.plan import workload

    raw = with_change("search.scheduler", "mo-asha")
    raw["search"].update(grace_period=1, reduction_factor=3)
    raw["training"]["epochs"] = 9
    plain = parse_spec(raw)
    raw["search"]["data_fidelity"] = 1 / 9
    grown = parse_spec(raw)
    data = spec_dataset(plain)
    # epochs of every row: 9 plain; 1/9 + 2 x 1/3 + 6 = 6.78 grown
    ratio = workload(grown, data).trained[1] / workload(plain, data).trained[1]
    assert ratio == pytest.approx((1 / 9 + 2 / 3 + 6) / 9, rel=0.01)


def test_the_epoch_budget_counts_an_epoch_on_a_share_of_the_rows_as_that_share():
    from search.driver.runner import EpochBudget

    budget = EpochBudget(2, ((1, 0.25), (3, 0.5)))
    for epoch in (1, 2, 3):  # 0.25 + 0.5 + 0.5
        budget("t1", {"epoch": epoch})
    assert budget.spent == pytest.approx(1.25) and not budget.stop_all()
    budget("t1", {"epoch": 4})  # every row from here
    assert budget.stop_all()
    plain = EpochBudget(2)
    plain("t", {"epoch": 1})
    plain("t", {"epoch": 2})
    assert plain.stop_all()


def test_an_export_says_how_the_data_grew():
    from search.record.searches import fit_description

    raw = with_change("search.scheduler", "mo-asha")
    raw["search"]["data_fidelity"] = 1 / 9
    raw["training"]["epochs"] = 9
    spec = parse_spec(raw)
    data = spec_dataset(spec)
    text = fit_description(resolve(spec, {}, data.modalities, len(data.classes)), len(data.pool))
    expected = "for 9 epochs; the first epochs on a growing share of those rows: 11% up to epoch 1, 33% up to epoch 3,"
    assert expected in text


def test_multivariate_tpe_models_the_conditional_space_jointly():
    """`tpe-multivariate`: past its start-up it samples from one joint model, each attention type's options only
    where that type is picked, and trials that run at once are not suggested the same point (constant liar)."""
    import warnings

    import optuna

    from search.spec.space import DefineByRun, build_sampler

    raw = yaml.safe_load((Path(__file__).parents[1] / "spaces" / "full.yaml").read_text())
    raw["search"].update(sampler="tpe-multivariate", startup_trials=3)
    spec = parse_spec(raw)
    assert spec.attention_options  # conditional parameters to model
    with warnings.catch_warnings():
        warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)  # silenced where it is built
        sampler = build_sampler(spec).sampler
    assert (sampler._multivariate, sampler._group, sampler._constant_liar) == (True, True, True)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    space = DefineByRun(spec)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for _ in range(12):
        trial = study.ask()
        space(trial)
        study.tell(trial, [trial.number / 10, 1000.0 - trial.number])
    for t in study.trials:
        attention = t.params.get("attention", "softmax")
        options = {k.split(".")[0] for k in t.params if "." in k}
        assert options <= {attention}  # options of the picked attention type only
    assert any("." in k for t in study.trials[3:] for k in t.params)  # the model sampled some options too
