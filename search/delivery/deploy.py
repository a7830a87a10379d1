"""Deployable exports of a trained candidate: an ONNX file checked with ONNX Runtime, and a version in MLflow's
Model Registry.

Both start from what ``emule train`` saved: an exported candidate YAML and its weights (by default beside it,
``.pt``). Everything that can be refused - a missing package, missing or mismatched weights, a variant or fusion
that ONNX cannot express, a bad model name - is refused before any export starts.

- **ONNX** (``to_onnx``): named inputs, one per modality plus ``<series>_valid`` (bool, True on real steps) for
  each series that the dataset pads; ``logits`` out; a dynamic batch axis. Written by torch's dynamo exporter
  (``torch.export``; the TorchScript exporter cannot give the patch unfolding a dynamic batch). Right after
  export ONNX Runtime runs the file on real test rows, one row and then all of them in one batch, and every logit
  must match torch's within ``ONNX_ATOL + ONNX_RTOL * |torch|``; otherwise the file is removed and the export
  refused. Batch-1 latency of both is measured.
- **MLflow** (``register``): MLflow's PyTorch flavour feeds a model one tensor, so the registered model takes one
  float32 row per sample, every input flattened side by side (``emule_models.serving.flat_rows``). It is saved in
  the flavour's ``pt2`` format (a ``torch.export`` graph: serving it needs torch, not this package).

The ONNX packages are the ``deploy`` extra, imported only here and only when asked for.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import re
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emule_models import ModelConfig
from emule_models.attention import ATTENTION
from emule_models.cost import count_parameters
from emule_models.data import Dataset, Split
from emule_models.fusion import FUSION, cross_shape
from emule_models.serving import FlatInputs, InputField, NamedInputs, field_tensors, flat_rows, input_fields
from emule_models.train import evaluate
from search.spec.metrics import SIZE
from search.spec.results import SEARCH_TAG, TRIAL_TAG
from search.trial.candidate import Candidate, candidate_dataset, data_in_place, ensemble_size, read_candidate

ONNX_RTOL = 1e-4
ONNX_ATOL = 1e-4
CHECK_ROWS = 64  # test rows run through both runtimes after an ONNX export
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
INSTALL_HINT = "pip install -e '.[deploy]'"
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def require_onnx() -> None:
    """Refuse ``--format onnx`` in one line when a package of the ``deploy`` extra is missing."""
    missing = [m for m in ONNX_PACKAGES if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"--format onnx needs {', '.join(missing)}, not installed here; install the deploy "
                          f"extra: {INSTALL_HINT}")


def check_model_name(name: str) -> str:
    if not MODEL_NAME.match(name):
        raise ValueError(f"--register: {name!r} not accepted; accepted: letters, digits, '_', '.', '-', starting "
                         "with a letter or digit (it becomes models:/NAME/VERSION)")
    return name


def onnx_problems(cfg: ModelConfig) -> list[str]:
    """Why ``cfg``'s attention variant or fusion cannot be written as ONNX, each naming it; empty when both can."""
    variant, fusion = ATTENTION.lookup(cfg.attention), FUSION.lookup(cfg.fusion)
    # depth 0 builds no attention layer: nothing of the variant to export
    shapes = (fusion.shapes(cfg) or [cross_shape(cfg, 1, 1)]) if cfg.depth else []
    reasons = [f"attention={cfg.attention}: {r}" for s in shapes for r in variant.onnx_reasons(s)]
    reasons += [f"fusion={cfg.fusion}: {r}" for r in fusion.onnx_reasons(cfg)]
    return list(dict.fromkeys(reasons))


@dataclass(frozen=True)
class Trained:
    """An exported candidate YAML and the weights ``emule train`` saved for it."""

    config: Path
    weights: Path
    candidate: Candidate
    source: dict[str, Any]

    def model(self) -> torch.nn.Module:
        from search.trial.candidate import load_weights

        return load_weights(self.weights).eval()


def locate(config: Path, weights: Path | None = None, onnx: bool = False) -> Trained:
    """The YAML ``config`` with its weights (default: beside it, ``.pt``), checked to hold the same model; with
    ``onnx``, also checked to be expressible in ONNX. Every refusal is one line, before any compute."""
    cand, source = read_candidate(config)
    weights = weights or config.with_suffix(".pt")
    check_trained(cand, config, weights, onnx)
    data_in_place(cand.data_section, source.get("search"), config, need="to check the model on its test rows")
    return Trained(config, weights, cand, source)


def check_trained(cand: Candidate, config: Path, weights: Path, onnx: bool = False,
                  write_yaml: str | None = None) -> None:
    """Refuse, in one line, ``weights`` that are missing or hold another model than ``cand`` (whose YAML is, or
    will be, ``config``), and with ``onnx`` a model ONNX cannot express.

    Args:
        write_yaml: the command that writes ``config``, named in the refusal when it does not exist yet.
    """
    if not weights.is_file():
        first = f"{write_yaml}, then " if write_yaml and not config.is_file() else ""
        raise FileNotFoundError(f"weights: {weights} does not exist; train the candidate first: {first}emule train "
                                f"{config} (it saves {config.with_suffix('.pt')})")
    blob = torch.load(weights, map_location="cpu", weights_only=True)
    saved = Candidate.from_dict(blob["candidate"]) if isinstance(blob, dict) and "candidate" in blob else None
    if saved is None or (saved.model, ensemble_size(saved)) != (cand.model, ensemble_size(cand)):
        raise ValueError(f"--weights: {weights} does not hold the model of {config} (weights saved by `emule train` "
                         "for another candidate?); accepted: the file `emule train` wrote for this YAML")
    if onnx:
        problems = onnx_problems(cand.model)
        if problems:
            raise ValueError(f"--format onnx: {config.name} cannot be exported: " + "; ".join(problems))


def masked_series(dataset: Dataset) -> list[str]:
    """The series the dataset pads (they take a ``_valid`` mask input), in modality order."""
    padded = set(dataset.train.valid) | set(dataset.val.valid) | set(dataset.test.valid)
    return [m.name for m in dataset.modalities if m.name in padded]


def check_rows(dataset: Dataset, rows: int = CHECK_ROWS) -> Split:
    """The first ``rows`` rows of the test split (real rows: the check runs what a user will feed)."""
    return dataset.test.take(np.arange(min(rows, len(dataset.test))))


# --- ONNX ---

@dataclass(frozen=True)
class OnnxCheck:
    """What ONNX Runtime gave on real rows against torch, and batch-1 latencies (median, milliseconds)."""

    path: Path
    rows: int
    max_abs_diff: float
    same_class: int
    onnx_ms: float
    torch_ms: float

    def line(self) -> str:
        return (f"{self.path}: ONNX Runtime matches torch on {self.rows} test rows (max |diff| "
                f"{self.max_abs_diff:.1e}; tolerance {ONNX_ATOL:g} + {ONNX_RTOL:g} x |logit|), same class on "
                f"{self.same_class}/{self.rows}; batch-1 latency: onnxruntime {self.onnx_ms:.3f} ms, torch "
                f"{self.torch_ms:.3f} ms")


def to_onnx(model: torch.nn.Module, path: Path, rows: Split, masked: list[str] | None = None,
            classes: list[str] | None = None, threads: int | None = None) -> OnnxCheck:
    """Write ``model`` as ONNX to ``path`` and check it with ONNX Runtime on ``rows`` (see the module doc).

    Args:
        model: a ``MultimodalClassifier`` (its ``cfg`` names the inputs).
        rows: real rows to check on (at least one).
        masked: the series that take a ``_valid`` mask input (default: those ``rows`` has masks for).
        classes: class names, stored in the file's metadata (``emule.classes``) with the input layout.
        threads: ONNX Runtime's intra-op threads (default: torch's, so the latencies compare).

    Raises ValueError naming the variant and fusion when the exporter fails or the outputs differ (the file is
    then removed); nothing is compiled before ``onnx_problems`` has been checked.
    """
    require_onnx()
    cfg = model.cfg
    problems = onnx_problems(cfg)
    if problems:
        raise ValueError("onnx: " + "; ".join(problems))
    if len(rows) < 1:
        raise ValueError("rows: empty; accepted: at least one real row to check the export on")
    fields = input_fields(cfg, sorted(rows.valid) if masked is None else masked)
    wrapper = NamedInputs(model.eval(), fields).eval()
    # torch.export fixes a dimension of size 1, so the example batch has two rows
    example = _tensors(fields, rows, np.resize(np.arange(len(rows)), 2))
    what = f"attention={cfg.attention} fusion={cfg.fusion}"
    batch = torch.export.Dim("batch")
    with _quiet():
        try:
            program = torch.onnx.export(wrapper, example, dynamo=True, input_names=[f.name for f in fields],
                                        output_names=["logits"], dynamic_shapes=(tuple({0: batch} for _ in fields),),
                                        verbose=False)
        except Exception as e:
            raise ValueError(f"onnx: {what} could not be exported ({type(e).__name__}: {_first_line(e)})") from None
    program.model.metadata_props.update(_onnx_metadata(cfg, fields, classes))
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))
    try:
        return _check(wrapper, path, fields, rows, what, threads or torch.get_num_threads())
    except Exception:
        path.unlink(missing_ok=True)
        raise


def _check(wrapper: NamedInputs, path: Path, fields: list[InputField], rows: Split, what: str,
           threads: int) -> OnnxCheck:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [f.name for f in fields]
    worst_diff, worst_excess, same = 0.0, -1.0, 0
    for idx in (np.arange(1), np.arange(len(rows))):  # one row, then every row in one batch: the batch is dynamic
        tensors = _tensors(fields, rows, idx)
        with torch.no_grad():
            expected = wrapper(*tensors).numpy()
        got = session.run(["logits"], dict(zip(names, (t.numpy() for t in tensors))))[0]
        diff = np.abs(got - expected)
        worst_diff = max(worst_diff, float(diff.max()))
        worst_excess = max(worst_excess, float((diff - ONNX_ATOL - ONNX_RTOL * np.abs(expected)).max()))
        same = int((got.argmax(-1) == expected.argmax(-1)).sum())
    if not worst_excess <= 0:  # also refuses NaN
        raise ValueError(f"onnx: {what}: ONNX Runtime differs from torch by up to {worst_diff:.2g} on {len(rows)} "
                         f"test rows; accepted: {ONNX_ATOL:g} + {ONNX_RTOL:g} x |logit|; nothing written")
    one = _tensors(fields, rows, np.arange(1))
    feed = dict(zip(names, (t.numpy() for t in one)))
    with torch.inference_mode():
        torch_ms = median_ms(lambda: wrapper(*one))
    onnx_ms = median_ms(lambda: session.run(["logits"], feed))
    return OnnxCheck(path, len(rows), worst_diff, same, onnx_ms, torch_ms)


def _tensors(fields: list[InputField], rows: Split, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
    inputs, valid, _ = rows.batch(idx)
    return field_tensors(fields, inputs, valid)


def _onnx_metadata(cfg: ModelConfig, fields: list[InputField], classes: list[str] | None) -> dict[str, str]:
    layout = [{"name": f.name, "shape": ["batch", *f.shape], "dtype": "bool" if f.mask else "float32"}
              for f in fields]
    meta = {"emule.inputs": json.dumps(layout), "emule.model": json.dumps(cfg.to_dict())}
    if classes is not None:
        meta["emule.classes"] = json.dumps(list(classes))
    return meta


def median_ms(call: Callable[[], Any], repeats: int = 50, warmup: int = 5) -> float:
    """Median wall time of ``call`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's chatter, silenced around the one export call: a notice per torchvision operator it cannot
    register (torchvision is not used), a deprecation inside torch's own pytree code and a note on axis names."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                    category=FutureWarning)
            # every input's batch axis is the one Dim "batch": the exporter notes that it keeps one name for it
            warnings.filterwarnings("ignore", message=r".*The axis name: batch will not be used",
                                    category=UserWarning)
            yield
    finally:
        logger.setLevel(level)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return re.sub(r"\x1b\[[0-9;]*m", "", text.splitlines()[0] if text else "")[:300]


# --- MLflow Model Registry ---

@dataclass(frozen=True)
class Registered:
    name: str
    version: int
    run_id: str
    width: int  # floats per input row

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def register(tracker, trained: Trained, name: str, model: torch.nn.Module | None = None,
             dataset: Dataset | None = None) -> Registered:
    """Log the trained model to MLflow as a PyTorch model (flat rows in, logits out; signature and an input
    example of real test rows) and register it as a new version of ``name``, tagged with its search, trial and
    the search's metrics. ``tracker`` is a ``search.record.tracking.Tracker``."""
    check_model_name(name)
    model = model if model is not None else trained.model()
    dataset = dataset if dataset is not None else candidate_dataset(trained.candidate)
    fields = input_fields(model.cfg, masked_series(dataset))
    wrapper = FlatInputs(model.eval(), fields).eval()
    inputs, valid, _ = dataset.test.batch(np.resize(np.arange(len(dataset.test)), 2))
    example = flat_rows(fields, inputs, valid)  # two real rows: torch.export fixes a batch of one
    with torch.no_grad():
        logits = wrapper(torch.from_numpy(example)).numpy()
    source, cfg = trained.source, trained.candidate.model
    tags = {SEARCH_TAG: source.get("search", ""), TRIAL_TAG: source.get("trial_id", ""),
            "emule.source_run_id": source.get("run_id", ""), "emule.config": trained.config.name,
            "emule.attention": cfg.attention, "emule.fusion": cfg.fusion, "emule.input_width": str(wrapper.width),
            **{f"metric.{k}": f"{float(v):.6g}" for k, v in source.get("metrics", {}).items()}}
    metadata = {"emule_inputs": [{"name": f.name, "shape": list(f.shape), "mask": f.mask} for f in fields],
                "emule_classes": list(dataset.classes), "emule_model": cfg.to_dict()}
    version, run_id = tracker.register_model(
        wrapper, name, example, logits, version_tags={k: v for k, v in tags.items() if v},
        metadata=metadata, run_name=f"model-{source.get('trial_id') or trained.config.stem}",
        metrics={"test_accuracy": evaluate(model, dataset.test)["accuracy"], SIZE: count_parameters(model)})
    return Registered(name, version, run_id, wrapper.width)
