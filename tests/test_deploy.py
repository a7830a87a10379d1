"""Deployable exports: ONNX checked with real ONNX Runtime for every attention variant and fusion, the refusals,
and registration in a real SQLite-backed MLflow Model Registry loaded back through ``mlflow.pyfunc``."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import onnxruntime as ort  # the deploy extra: `make setup` (and so CI) installs it
import pytest
import torch
import yaml

from emule_models import ModelConfig, build_model
from emule_models.attention import ATTENTION
from emule_models.attention.softmax import SoftmaxAttention
from emule_models.cost import count_parameters
from emule_models.data import synthetic
from emule_models.ensemble import MeanEnsemble, build_ensemble
from emule_models.fusion import FUSION
from emule_models.serving import FlatInputs, field_tensors, flat_rows, input_fields
from emule_models.stems import STEMS
from emule_models.train import TrainConfig
from search.cli import main
from search.delivery import deploy
from search.record.tracking import Tracker
from search.trial.candidate import Candidate

torch.set_num_threads(1)

OPTIONS = {"linformer": {"proj_len": 4}, "nystrom": {"landmarks": 3}, "local": {"window": 2},
           "performer": {"features": 8}}


@pytest.fixture(scope="module")
def data():
    """Variable-length series (padded, with a mask) and an image: both kinds of input, and real padding."""
    return synthetic(n=60, length=32, classes=3, image=True, variable_length=True, image_size=8)


def tiny(data, attention: str = "softmax", fusion: str = "early", **kw) -> ModelConfig:
    return ModelConfig(modalities=data.modalities, num_classes=3, attention=attention, depth=1, width=8, heads=2,
                       fusion=fusion, patch_len=4, image_patch=2, attention_options=OPTIONS.get(attention, {}), **kw)


def onnx_matches_torch(model, data, path) -> None:
    """Export, then check the file independently: named inputs, a dynamic batch (3 rows here, 2 at export),
    outputs within the stated tolerance, and padding that never reaches the output."""
    check = deploy.to_onnx(model, path, data.test, ["series"], classes=list(data.classes))
    assert check.rows == len(data.test) and check.onnx_ms > 0 and check.torch_ms > 0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["series", "image", "series_valid"]
    assert session.get_inputs()[2].type == "tensor(bool)"
    fields = input_fields(model.cfg, ["series"])
    inputs, valid, _ = data.test.batch(np.arange(3))
    with torch.no_grad():
        expected = model(inputs, valid).numpy()
    feed = {f.name: t.numpy() for f, t in zip(fields, field_tensors(fields, inputs, valid))}
    np.testing.assert_allclose(session.run(["logits"], feed)[0], expected, rtol=deploy.ONNX_RTOL,
                               atol=deploy.ONNX_ATOL)
    assert not valid["series"].all()  # some rows are padded ...
    feed["series"] = np.where(feed["series_valid"][:, None], feed["series"], 1e3).astype(np.float32)
    np.testing.assert_allclose(session.run(["logits"], feed)[0], expected, rtol=deploy.ONNX_RTOL,
                               atol=deploy.ONNX_ATOL)  # ... and what the padding holds changes nothing


@pytest.mark.parametrize("attention", sorted(ATTENTION))
def test_every_attention_variant_exports_to_onnx_or_is_refused(attention, data, tmp_path):
    cfg = tiny(data, attention)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if deploy.onnx_problems(cfg):
        with pytest.raises(ValueError, match=f"attention={attention}"):
            deploy.to_onnx(model, tmp_path / "m.onnx", data.test)
        assert not (tmp_path / "m.onnx").exists()
        return
    onnx_matches_torch(model, data, tmp_path / "m.onnx")


@pytest.mark.parametrize("fusion", sorted(set(FUSION) - {"early"}))  # early: in every variant's test above
def test_every_fusion_exports_to_onnx_or_is_refused(fusion, data, tmp_path):
    cfg = tiny(data, fusion=fusion)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if deploy.onnx_problems(cfg):
        with pytest.raises(ValueError, match=f"fusion={fusion}"):
            deploy.to_onnx(model, tmp_path / "m.onnx", data.test)
        return
    onnx_matches_torch(model, data, tmp_path / "m.onnx")


@pytest.mark.parametrize("tokenizer", sorted(STEMS))
def test_every_stem_exports_to_onnx(tokenizer, data, tmp_path):
    """Batch norm folds into a fixed affine map in evaluation; LITE's fixed filters are constants of the graph."""
    cfg = tiny(data, tokenizer=tokenizer, conv_kernel=7, conv_dilation=2)
    torch.manual_seed(0)
    model = build_model(cfg)
    model(*data.train.batch(np.arange(16))[:2])  # training-mode steps move batch norm off its initial statistics
    onnx_matches_torch(model.eval(), data, tmp_path / "m.onnx")


def test_depth_zero_exports_to_onnx(data, tmp_path):
    cfg = dataclasses.replace(tiny(data, "linear", tokenizer="lite"), depth=0, heads=3)
    torch.manual_seed(0)
    assert deploy.onnx_problems(cfg) == []
    onnx_matches_torch(build_model(cfg).eval(), data, tmp_path / "m.onnx")


@pytest.mark.parametrize("position,attention", [("tape", "softmax"), ("relative", "softmax"), ("relative", "local")])
def test_positions_export_to_onnx(position, attention, data, tmp_path):
    cfg = tiny(data, attention, position=position)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # a relative bias starts at zero: give it values that show in the output
        for name, p in model.named_parameters():
            if ".relative." in name:
                p.normal_()
    onnx_matches_torch(model, data, tmp_path / "m.onnx")


class NoOnnx(SoftmaxAttention):
    name = "no_onnx"

    @classmethod
    def onnx_reasons(cls, shape):
        return ["needs an operator ONNX lacks"]


class DataDependent(SoftmaxAttention):
    """Branches on tensor values: torch.export cannot trace that into a graph."""

    name = "data_dependent"

    def forward(self, q, k, v, mask=None, q_mask=None):
        if bool((q > 0).all()):
            return q
        return super().forward(q, k, v, mask)


def test_a_declared_reason_is_refused_before_export_naming_the_variant(data, tmp_path, monkeypatch):
    monkeypatch.setitem(ATTENTION, NoOnnx.name, NoOnnx)
    cfg = tiny(data, NoOnnx.name)
    assert deploy.onnx_problems(cfg) == ["attention=no_onnx: needs an operator ONNX lacks"]
    with pytest.raises(ValueError, match="^onnx: attention=no_onnx: needs an operator ONNX lacks$"):
        deploy.to_onnx(build_model(cfg), tmp_path / "m.onnx", data.test)
    config, _ = write_candidate(tmp_path, cfg)
    with pytest.raises(ValueError, match="cannot be exported: attention=no_onnx: needs an operator ONNX lacks"):
        deploy.locate(config, onnx=True)
    assert deploy.locate(config).weights == config.with_suffix(".pt")  # registering it is fine
    assert not (tmp_path / "m.onnx").exists()


def test_an_exporter_failure_is_one_line_naming_the_variant(data, tmp_path, monkeypatch):
    monkeypatch.setitem(ATTENTION, DataDependent.name, DataDependent)
    with pytest.raises(ValueError) as e:
        deploy.to_onnx(build_model(tiny(data, DataDependent.name)), tmp_path / "m.onnx", data.test)
    assert str(e.value).startswith("onnx: attention=data_dependent fusion=early could not be exported (")
    assert "\n" not in str(e.value) and not (tmp_path / "m.onnx").exists()


def test_flat_rows_feed_the_model_exactly(data):
    cfg = tiny(data, tokenizer="conv", channel_mode="independent", series_norm="sample")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    fields = input_fields(cfg, ["series"])
    assert [(f.name, f.shape) for f in fields] == [("series", (1, 32)), ("image", (1, 8, 8)), ("series_valid", (32,))]
    inputs, valid, _ = data.test.batch(np.arange(5))
    rows = flat_rows(fields, inputs, valid)
    assert rows.shape == (5, 32 + 64 + 32) and rows.dtype == np.float32
    with torch.no_grad():
        torch.testing.assert_close(FlatInputs(model, fields)(torch.from_numpy(rows)), model(inputs, valid),
                                   rtol=0, atol=0)
    unmasked = flat_rows(fields, inputs)  # no mask given: every step is real
    assert (unmasked[:, -32:] == 1).all()
    with pytest.raises(ValueError, match=r"^image: shape \(1, 4, 4\) per sample; accepted: \(1, 8, 8\)$"):
        flat_rows(fields, {**inputs, "image": inputs["image"][..., :4, :4]}, valid)


def test_input_fields_refuse_bad_masks(data):
    cfg = tiny(data)
    with pytest.raises(ValueError, match=r"^masked: \['image'\] are not series modalities of the model; "
                                         r"accepted: \['series'\]$"):
        input_fields(cfg, ["image"])
    clash = ModelConfig(modalities=({"name": "a", "kind": "series", "channels": 1, "length": 8},
                                    {"name": "a_valid", "kind": "series", "channels": 1, "length": 8}),
                        num_classes=2, depth=1, width=8, heads=2, patch_len=4)
    with pytest.raises(ValueError, match=r"^modalities: \['a_valid'\] name both a modality and a mask"):
        input_fields(clash, ["a"])


def write_candidate(tmp_path, cfg: ModelConfig, data_section: dict | None = None, seed: int = 0, folds: int = 1):
    """An exported YAML and the weights `emule train` would have saved beside it (untrained: what is checked
    here is the export, not the training); ``folds`` >= 2: a fold ensemble of that many models."""
    final = {"final": "fold_ensemble"} if folds > 1 else {}
    data_section = {**(data_section or {"name": "plaid"}), **({"cv_folds": folds} if folds > 1 else {})}
    cand = Candidate(cfg, TrainConfig(epochs=1, **final), data_section)
    config = tmp_path / "search-a1b2c3.yaml"
    source = {"search": "search-20260101", "trial_id": "a1b2c3", "run_id": "0123abcd",
              "metrics": {"val_accuracy": 0.5, "params": 1234.0}}
    config.write_text(yaml.safe_dump({**cand.to_dict(), "source": source}, sort_keys=False))
    torch.manual_seed(seed)
    model = (build_ensemble(cfg, folds) if folds > 1 else build_model(cfg)).eval()
    torch.save({"candidate": cand.to_dict(), "state_dict": model.state_dict()}, config.with_suffix(".pt"))
    return config, model


def test_weights_must_exist_and_hold_the_yaml_model(data, tmp_path):
    config, _ = write_candidate(tmp_path, tiny(data))
    with pytest.raises(FileNotFoundError, match=f"^weights: {tmp_path / 'nope.pt'} does not exist; train the "
                                                f"candidate first: emule train {config}"):
        deploy.locate(config, tmp_path / "nope.pt")
    other = Candidate(tiny(data, "linear"), TrainConfig(epochs=1), {"name": "plaid"})
    torch.save({"candidate": other.to_dict(), "state_dict": build_model(other.model).state_dict()}, tmp_path / "o.pt")
    with pytest.raises(ValueError, match="does not hold the model of"):
        deploy.locate(config, tmp_path / "o.pt")


def test_a_fold_ensemble_averages_its_members_probabilities(data):
    torch.manual_seed(0)
    members = [build_model(tiny(data)).eval() for _ in range(3)]
    ensemble = MeanEnsemble(members).eval()
    inputs, valid, _ = data.test.batch(np.arange(4))
    with torch.no_grad():
        mean = torch.stack([m(inputs, valid).softmax(-1) for m in members]).mean(0)
        np.testing.assert_allclose(ensemble(inputs, valid).exp().numpy(), mean.numpy(), rtol=1e-5, atol=1e-6)
    assert count_parameters(ensemble) == 3 * count_parameters(members[0]) and ensemble.cfg == members[0].cfg
    with pytest.raises(ValueError, match="^members: models of different configs"):
        MeanEnsemble([members[0], build_model(tiny(data, "linear"))])
    with pytest.raises(ValueError, match="^members: empty"):
        MeanEnsemble([])


def test_a_fold_ensemble_exports_to_onnx(data, tmp_path):
    torch.manual_seed(0)
    onnx_matches_torch(build_ensemble(tiny(data, tokenizer="lite"), 2).eval(), data, tmp_path / "m.onnx")


def test_weights_of_a_fold_ensemble_load_as_one(data, tmp_path):
    config, model = write_candidate(tmp_path, tiny(data), folds=3)
    trained = deploy.locate(config)
    loaded = trained.model()
    assert isinstance(loaded, MeanEnsemble) and len(loaded.members) == 3
    inputs, valid, _ = data.test.batch(np.arange(3))
    with torch.no_grad():
        np.testing.assert_array_equal(loaded(inputs, valid).numpy(), model(inputs, valid).numpy())
    (tmp_path / "single").mkdir()
    single, _ = write_candidate(tmp_path / "single", tiny(data))  # the same model config, deployed as one model
    with pytest.raises(ValueError, match="does not hold the model of"):
        deploy.locate(config, single.with_suffix(".pt"))


@pytest.mark.parametrize("folds", [1, 2])
def test_registered_model_loads_back_through_pyfunc(folds, data, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)  # a SQLite store keeps artifacts under ./mlruns

    config, model = write_candidate(tmp_path, tiny(data), folds=folds)
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "deploy")
    before = os.environ.get("MLFLOW_TRACKING_URI")
    first = deploy.register(tracker, deploy.locate(config), "tiny-model", model=model, dataset=data)
    assert (first.name, first.version, first.uri) == ("tiny-model", 1, "models:/tiny-model/1")
    assert os.environ.get("MLFLOW_TRACKING_URI") == before  # MLflow's process-wide URI is put back

    version = tracker.model_version("tiny-model", "1")
    assert version.run_id == first.run_id
    assert {"emule.search": "search-20260101", "emule.trial_id": "a1b2c3", "emule.source_run_id": "0123abcd",
            "metric.val_accuracy": "0.5", "metric.params": "1234"}.items() <= version.tags.items()
    run = tracker.run(first.run_id)
    assert run.data.tags["emule.kind"] == "model" and "test_accuracy" in run.data.metrics
    assert not tracker.candidates(run.info.run_id)  # a run of its own, in no search

    fields = input_fields(model.cfg, ["series"])
    inputs, valid, _ = data.test.batch(np.arange(len(data.test)))
    rows = flat_rows(fields, inputs, valid)
    assert first.width == rows.shape[1]
    mlflow.set_tracking_uri(tracker.uri)
    try:
        loaded = mlflow.pyfunc.load_model(first.uri)
        with torch.no_grad():
            expected = model(inputs, valid).numpy()
        np.testing.assert_allclose(loaded.predict(rows), expected, rtol=1e-6, atol=1e-6)
        assert loaded.metadata.metadata["emule_classes"] == list(data.classes)
        assert loaded.metadata.get_input_schema().inputs[0].shape == (-1, rows.shape[1])  # any batch
        second = deploy.register(tracker, deploy.locate(config), "tiny-model", model=model, dataset=data)
        assert second.version == 2
    finally:
        mlflow.set_tracking_uri(before)


def test_cli_refuses_before_anything_is_computed(data, tmp_path, capsys):
    config, _ = write_candidate(tmp_path, tiny(data))
    config.with_suffix(".pt").unlink()
    cases = [(["export", str(config), "--format", "onnx"], "emule export: weights: "),
             (["export", str(config), "--register", "no spaces"], "emule export: --register: 'no spaces' not "),
             (["export", str(config)], f"emule export: name: {config} is already an exported YAML"),
             (["export", "somesearch", "--weights", "w.pt"], "emule export: --weights: only with --format onnx"),
             (["export", str(tmp_path / "missing.yaml"), "--format", "onnx"], "emule export: name: ")]
    for argv, start in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(start) and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [config.name]


@pytest.mark.slow
def test_cli_exports_a_plaid_candidate_to_onnx_and_the_registry(tmp_path, capsys, monkeypatch):
    """The real variable-length dataset end to end: the mask is an ONNX input, the check runs on its test rows."""
    from emule_models.data import load_data

    monkeypatch.chdir(tmp_path)  # a SQLite store keeps artifacts under ./mlruns

    plaid = load_data({"name": "plaid"})
    cfg = ModelConfig(modalities=plaid.modalities, num_classes=len(plaid.classes), attention="linear", depth=1,
                      width=8, heads=2, patch_len=64)
    config, model = write_candidate(tmp_path, cfg, {"name": "plaid"})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["export", str(config), "--format", "onnx", "--register", "plaid-small", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(config)
    assert out[1].startswith(f"{config.with_suffix('.onnx')}: ONNX Runtime matches torch on {deploy.CHECK_ROWS} "
                             "test rows") and "batch-1 latency: onnxruntime " in out[1]
    assert out[2].startswith("registered models:/plaid-small/1 (run ")
    session = ort.InferenceSession(str(config.with_suffix(".onnx")), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["current", "current_valid"]
    meta = session.get_modelmeta().custom_metadata_map
    assert yaml.safe_load(meta["emule.classes"]) == list(plaid.classes)
    version = Tracker(uri, "emule").model_version("plaid-small", "1")
    assert version.tags["emule.trial_id"] == "a1b2c3"


@pytest.mark.slow
def test_cli_exports_a_search_front_member_once_it_is_trained(tmp_path, capsys, monkeypatch):
    """`emule export NAME --format onnx` on a search's front: refused, writing nothing, until `emule train` has saved
    the weights beside the YAML (the refusal names the commands), then written beside them. The search record is made
    through the tracker, as a search makes it."""
    from emule_models.cost import count_parameters
    from search.driver.checks import parse_spec
    from search.trial.candidate import resolve, spec_dataset

    monkeypatch.chdir(tmp_path)  # a SQLite store keeps artifacts under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw = {"name": "gp", "data": {"name": "gunpoint"}, "baselines": [],
           "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                          {"metric": "param_count", "mode": "min", "reference": 1e6, "log": True}],
           "space": {"depth": [1]}, "training": {"epochs": 1, "batch_size": 16},
           "search": {"sampler": "random", "trials": 1, "storage": str(tmp_path / "runs")},
           "tracking": {"uri": uri, "experiment": "emule"}}
    spec = parse_spec(raw)
    dataset = spec_dataset(spec)
    cand = resolve(spec, {"attention": "performer", "depth": 1, "width": 8, "heads": 2, "patch_len": 10},
                   dataset.modalities, len(dataset.classes))
    tracker = Tracker(uri, "emule")
    parent = tracker.start_search("gp-run", {}, yaml.safe_dump(raw))
    run = tracker.start_candidate(parent, "t1", "t1", {})
    tracker.log_metrics(run, {"val_accuracy": 0.7, "param_count": count_parameters(build_model(cand.model))}, step=1)
    tracker.finish_candidate(run, "FINISHED", {"budget_done": "true"}, cand.to_dict())

    yamls = ["export", "gp", "--out", str(tmp_path / "exports"), "--tracking-uri", uri]
    export = [*yamls, "--format", "onnx"]
    config = tmp_path / "exports" / "gp-run-t1.yaml"
    assert main(export) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (  # after MLflow's own lines on creating the store
        f"emule export: weights: {config.with_suffix('.pt')} does not exist; train the candidate first: emule "
        f"export gp --out {tmp_path / 'exports'} --tracking-uri {uri}, then emule train {config} (it saves "
        f"{config.with_suffix('.pt')})")
    assert not (tmp_path / "exports").exists()  # checked first: nothing written
    assert main(yamls) == 0 and config.is_file()
    assert main(["train", str(config)]) == 0
    capsys.readouterr()
    assert main(export) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(config) and out[1].startswith(f"{config.with_suffix('.onnx')}: ONNX Runtime matches torch")
    session = ort.InferenceSession(str(config.with_suffix(".onnx")), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["position"]  # GunPoint is not padded: no mask input
